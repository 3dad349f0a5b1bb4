"""A content-addressed cache of trained models and of their outputs.

Every entry is keyed by a hash of the resolved configuration that produced it (dataset, split,
model, recipe, seed, role, forget classes where relevant), so a changed configuration never reuses
a stale artefact. An entry is two files: ``<key>.pt`` (the weights) and ``<key>.json`` (the
configuration, training metadata and the weights' sha256), the JSON written last. An entry whose
checksum does not match is rebuilt with a warning, never loaded.

Several processes may share one cache: the ranks of a multi-device run (rank 0 alone reads the disk and
writes; every rank gets its answer, see :mod:`benchmark.core.distributed`) and the shards of a grid (a lock
file per entry, see :mod:`benchmark.core.locks`: the first shard to need a model trains it, the others wait
for the entry and load it).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from benchmark.core.atomic import torch_load_checked, torch_save_atomic, write_bytes_atomic
from benchmark.core.distributed import agree, is_writer
from benchmark.core.hashing import config_hash
from benchmark.core.locks import EntryLock

__all__ = ["ModelCache", "config_hash"]


class ModelCache:
    """Trained models and their outputs on disk, keyed by configuration hash.

    Args:
        root: the cache folder (shared safely between run directories: keys are content hashes).
    """

    def __init__(self, root: str | Path, *, poll_s: float = 2.0) -> None:
        self.root = Path(root)
        self.poll_s = poll_s  # how often a shard waiting for another's entry looks again
        self.trained: list[str] = []  # keys trained by this process, in order (tests and perf read it)
        self.loaded: list[str] = []

    def _paths(self, key: str, kind: str) -> tuple[Path, Path]:
        folder = self.root / kind / key[:2]
        return folder / f"{key}.pt", folder / f"{key}.json"

    def _read(self, key: str, kind: str) -> tuple[Any, dict] | None:
        blob, meta_path = self._paths(key, kind)
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            warnings.warn(f"cache entry {meta_path} is unreadable; rebuilding it", stacklevel=3)
            return None
        obj = torch_load_checked(blob, meta.get("sha256", ""))
        if obj is None:
            warnings.warn(f"cache entry {blob} is missing, fails its checksum or holds more than tensors; "
                          "rebuilding it", stacklevel=3)
            return None
        return obj, meta

    def _agreed_read(self, key: str, kind: str) -> tuple[Any, dict] | None:
        """:meth:`_read` by rank 0, its answer on every rank (no rank may train what another loads)."""
        return agree(lambda: self._read(key, kind))

    def _claim(self, key: str, kind: str) -> tuple[tuple[Any, dict] | None, EntryLock | None]:
        """The finished entry, or the lock that makes this process the one to build it.

        Waits (polling) while another shard holds the entry's lock, then loads what it wrote; if that
        shard died, its lock goes stale and this one takes over.
        """
        lock = EntryLock(self.root / "locks" / kind / f"{key}.lock")
        while True:
            cached = self._agreed_read(key, kind)
            if cached is not None:
                return cached, None
            if agree(lock.try_acquire):
                cached = self._agreed_read(key, kind)  # finished between our look and our lock
                if cached is None:
                    return None, lock
                lock.release()
                return cached, None
            time.sleep(self.poll_s)

    def _write(self, key: str, kind: str, obj: Any, config: dict, meta: dict) -> None:
        if not is_writer():
            return
        blob, meta_path = self._paths(key, kind)
        sha = torch_save_atomic(obj, blob)
        record = {"key": key, "config": config, "meta": meta, "sha256": sha}
        write_bytes_atomic(meta_path, json.dumps(record, indent=1, default=str).encode())

    def has_model(self, key: str) -> bool:
        """Whether a finished model entry exists for ``key`` (its record is written last; the checksum is
        verified only when the entry is loaded)."""
        return self._paths(key, "models")[1].exists()

    def get_or_train(self, config: dict[str, Any], build: Callable[[], nn.Module],
                     train: Callable[[nn.Module], dict[str, Any]]) -> tuple[nn.Module, dict[str, Any]]:
        """The model for ``config``: loaded if cached, else built, trained, stored.

        Args:
            config: everything that determines the trained weights.
            build: makes a fresh model (already seeded by the caller's config).
            train: trains the model in place and returns metadata to store (e.g. ``train_time_s``).

        Returns:
            The model (on the CPU) and its metadata.
        """
        key = config_hash(config)
        model = build()  # first: a model that cannot be built (a typo) must not leave the entry locked
        cached, lock = self._claim(key, "models")
        if cached is not None:
            state, record = cached
            model.load_state_dict(state)
            self.loaded.append(key)
            return model, record["meta"] | {"key": key}
        try:
            meta = train(model)
            model.cpu()
            self._write(key, "models", model.state_dict(), config, meta)
        finally:
            if lock is not None:
                lock.release()
        self.trained.append(key)
        return model, meta | {"key": key}

    def outputs(self, model_key: str, split_key: str) -> dict[str, Tensor] | None:
        """Cached outputs (e.g. logits per split) of a cached model, or None."""
        cached = self._agreed_read(config_hash({"model": model_key, "splits": split_key}), "outputs")
        return None if cached is None else cached[0]

    def outputs_or_compute(self, model_key: str, split_key: str,
                           compute: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
        """Cached outputs, or ``compute()`` them (which may train or unlearn a model) under the entry's
        lock and store them, so no two shards compute the same entry."""
        cached, lock = self._claim(config_hash({"model": model_key, "splits": split_key}), "outputs")
        if cached is not None:
            return cached[0]
        try:
            outputs = compute()
            self.store_outputs(model_key, split_key, outputs)
        finally:
            if lock is not None:
                lock.release()
        return outputs

    def store_outputs(self, model_key: str, split_key: str, outputs: dict[str, Tensor]) -> None:
        config = {"model": model_key, "splits": split_key}
        self._write(config_hash(config), "outputs", outputs, config, {})
