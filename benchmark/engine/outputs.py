"""Model outputs per split: one inference pass per model and split, shared by every metric and attack.

Attacks never run a model themselves; they read :class:`attacks.outputs.Outputs`. Outputs of cached models (the
original, the oracle, the bank) and of unlearned ones (keyed by what determines them) are stored in the cache with
their labels and a record of what they are, so a re-run computes none of them and ``bench rescore`` needs
nothing else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from attacks.outputs import Outputs
from benchmark.engine.cache import ModelCache
from benchmark.engine.models import predict_logits
from datamodules.base import EVAL_SPLITS, UnlearningDataModule


class OutputsProvider:
    """Computes :class:`Outputs` once per model and split, with a disk cache for cached models.

    Args:
        dm: the set-up DataModule (its forget classes define D_f, T_f, ...).
        cache: where cached models' outputs are stored; None keeps them in memory only.
    """

    def __init__(self, dm: UnlearningDataModule, cache: ModelCache | None = None) -> None:
        self.dm = dm
        self.cache = cache
        self.passes: Counter[tuple[str, str]] = Counter()  # (model id, split) -> inference passes
        self._tensors = {s: dm.dataset(s).tensors() for s in EVAL_SPLITS}
        self._memo: dict[str, Outputs] = {}
        self._about: dict[str, dict[str, Any]] = {}  # cached key -> what the model is, for its cache record

    @property
    def labels(self) -> dict[str, Tensor]:
        return {s: y for s, (_, y) in self._tensors.items()}

    def has(self, cached_key: str) -> bool:
        """Whether the disk cache already holds the outputs of ``cached_key`` on these splits."""
        return self.cache is not None and self.cache.outputs(cached_key, self.dm.split_hash) is not None

    def describe(self, cached_key: str, about: dict[str, Any]) -> None:
        """Record what the model of ``cached_key`` is, for callers of :meth:`of` that cannot say (the attack
        callbacks ask for the unlearned model's outputs by key alone)."""
        self._about[cached_key] = about

    def of(self, model: nn.Module | Callable[[], nn.Module], model_id: str, cached_key: str | None = None,
           about: dict[str, Any] | None = None) -> Outputs:
        """Outputs of ``model``; ``model_id`` names it for memoisation, ``cached_key`` for the disk cache.

        ``model`` may be a function that makes the model (trains or unlearns it): it is called only when
        the outputs are neither memoised nor cached, so a re-run does not re-run models.

        Args:
            model: the model, or a function that makes it.
            model_id: its name for memoisation (unique within the cell).
            cached_key: its key in the disk cache; None keeps its outputs in memory only.
            about: what it is (role, method, index, ...), recorded with its cache entry (default: what
                :meth:`describe` recorded for ``cached_key``).
        """
        if model_id in self._memo:
            return self._memo[model_id]

        def compute() -> dict[str, dict[str, Tensor]]:
            # a plain loop over in-memory tensors, not a Trainer: every process of a multi-device run
            # sees each sample exactly once, in order, whatever the number of devices
            made = model if isinstance(model, nn.Module) else model()
            logits = {}
            for split, (x, _) in self._tensors.items():
                logits[split] = predict_logits(made, x, batch_size=self.dm.eval_batch_size)
                self.passes[(model_id, split)] += 1
            return {"logits": logits, "labels": self.labels}

        if cached_key is not None and self.cache is not None:
            entry = self.cache.outputs_or_compute(cached_key, self.dm.split_hash, compute,
                                                  about=about or self._about.get(cached_key))
        else:
            entry = compute()
        outputs = Outputs(logits=entry["logits"], labels=entry.get("labels", self.labels))
        self._memo[model_id] = outputs
        return outputs

    def forget(self, model_id: str) -> None:
        """Drop a memoised entry (a model that changed since)."""
        self._memo.pop(model_id, None)
