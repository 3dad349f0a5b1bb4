"""The probes' results kept in the model cache, under the key of the model each probe ran on.

The relearning and representation probes (:mod:`attacks.probes`) run models, which ``bench rescore`` never does.
Their results are a function of the probed model (its cache key: the unlearned model's training key, or a bank
model's key), the cell's splits and the probe's settings, so they are kept as JSON records in
``<cache>/probes/``: a re-run of a cell probes nothing again, and a rescore reads them back; where a read-only
cache lacks one (rows run before the probes existed, or under other probe settings), the probe's scores are
left out of the rescored row and its diagnostics say why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attacks import ScoreUndefined
from benchmark.core.hashing import config_hash
from benchmark.engine.cache import ModelCache

KIND = "probes"  # the cache folder of the records


class ProbeRecords:
    """An :class:`attacks.probes.ProbeStore` backed by the model cache.

    Args:
        cache: the model cache (None: nothing is kept, every probe is computed).
        split_hash: the cell's splits (the DataModule's split hash: data, partition and forget classes).
        model_keys: the cache key of each subject a probe runs on: ``method`` (the unlearned model's outputs key,
            which names its training key), ``oracle`` and ``references`` (the M bank keys, in order).
    """

    def __init__(self, cache: ModelCache | None, split_hash: str, model_keys: dict[str, str | list[str]]) -> None:
        self.cache, self.split_hash, self.model_keys = cache, split_hash, model_keys

    def key(self, probe: str, subject: str) -> str:
        return config_hash({"probe": probe, "model": self.model_keys[subject], "splits": self.split_hash})

    def __call__(self, probe: str, subject: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self.cache is None:
            return compute()
        if not self.cache.read_only:
            return self.cache.remember(KIND, self.key(probe, subject), compute)

        def refuse() -> dict[str, Any]:
            raise ScoreUndefined(f"the model cache {self.cache.root} keeps no result of the probe {probe} on the "
                                 f"{subject}, and this command runs no model: `bench run` the cell (with this cache) "
                                 "to compute it")

        return self.cache.remember(KIND, self.key(probe, subject), refuse)
