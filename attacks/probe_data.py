"""What the probes that run models read beside the outputs (:mod:`attacks.probes`): the cell's data and
fine-tuning settings, and a store that keeps their results. Built by the engine (``benchmark.engine.cell``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor


@dataclass(frozen=True)
class ProbeData:
    """The cell's data and fine-tuning settings, as the probes read them.

    Args:
        split: ``split(name)`` -> (normalised images, labels) of ``D_r``, ``D_f``, ``V``, ``T_f`` or ``T_r``,
            without augmentation.
        num_classes: K.
        lr: the preset's fine-tuning learning rate (its hand-set ``ft`` value).
        momentum: SGD momentum of that fine-tuning.
        weight_decay: its weight decay.
        batch_size: the preset's unlearning batch size.
    """

    split: Callable[[str], tuple[Tensor, Tensor]]
    num_classes: int
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int

    def settings(self) -> dict[str, Any]:
        """What of the data settings changes a probe's numbers (it enters the probe's record key)."""
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "batch_size": self.batch_size}


class ProbeStore(Protocol):
    """Keeps a probe's results under the key of the model probed (the engine's cache).

    ``store(probe, subject, compute)``: the record of ``probe`` (a name with its settings) on ``subject``
    (``method``, ``oracle`` or ``references``), read if kept, else ``compute()``-d and kept. Where nothing may
    be computed (``bench rescore``), a missing record raises :class:`ScoreUndefined`.
    """

    def __call__(self, probe: str, subject: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]: ...
