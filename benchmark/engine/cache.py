"""A content-addressed cache of trained models and of their outputs.

Every entry is keyed by a hash of the resolved configuration that produced it (dataset, split,
model, recipe, seed, role, forget classes where relevant), so a changed configuration never reuses
a stale artefact. An entry is two files: ``<key>.safetensors`` (the weights, or the outputs per split: a
tensor tree, see :mod:`benchmark.core.tensorfile`) and ``<key>.json`` (the configuration, training metadata,
the tensor file's format and sha256), the JSON written last. Nothing is pickled: an entry whose checksum
does not match, or an old one written by ``torch.save`` (``<key>.pt``, its record naming no format), is
rebuilt with a warning, never loaded.

Several processes may share one cache: the ranks of a multi-device run (rank 0 alone reads the disk and
writes; every rank gets its answer, see :mod:`benchmark.core.distributed`) and the shards of a grid (a lock
file per entry, see :mod:`benchmark.core.locks`: the first shard to need a model trains it, the others wait
for the entry and load it).

Each record also says what it holds (``about``: role, method, preset, seed, forget classes, index of the
model whose weights or outputs it is), so a cache folder can be read without the code that wrote it. A
read-only cache (``bench rescore``) never trains or computes: a missing entry raises :class:`MissingCacheEntry`.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from benchmark.core import tensorfile
from benchmark.core.atomic import read_checked, write_bytes_atomic, write_checked_atomic
from benchmark.core.distributed import agree, is_writer
from benchmark.core.errors import BenchError
from benchmark.core.hashing import config_hash
from benchmark.core.locks import EntryLock

__all__ = ["MissingCacheEntry", "ModelCache", "config_hash", "describe"]

# what an entry's ``about`` may say, in the order a message names them
ABOUT_KEYS = ("role", "method", "index", "preset", "seed", "forget_classes")


def describe(about: dict[str, Any] | None) -> str:
    """``about`` in words: ``unlearned model (method ft, index 0, preset digits, seed 0, forget classes [3])``."""
    about = about or {}
    details = ", ".join(f"{k.replace('_', ' ')} {about[k]}" for k in ABOUT_KEYS[1:] if about.get(k) is not None)
    return f"{about.get('role', 'unnamed')} model" + (f" ({details})" if details else "")


class MissingCacheEntry(BenchError):
    """A read-only cache lacks an entry that would have to be trained or computed."""


def _outputs_entry(obj: dict[str, Any]) -> dict[str, Any]:
    """An outputs entry as ``{"logits": ..., "labels": ...}``; entries written before labels were stored
    hold the logits alone."""
    return obj if "logits" in obj else {"logits": obj}


class ModelCache:
    """Trained models and their outputs on disk, keyed by configuration hash.

    Args:
        root: the cache folder (shared safely between run directories: keys are content hashes).
        poll_s: how often a shard waiting for another's entry looks again.
        read_only: never train, compute or write (nor take locks): a missing entry raises
            :class:`MissingCacheEntry`.
    """

    def __init__(self, root: str | Path, *, poll_s: float = 2.0, read_only: bool = False) -> None:
        self.root = Path(root)
        self.poll_s = poll_s
        self.read_only = read_only
        # keys this process trained, loaded, computed outputs for, in order (tests, perf and summaries read them)
        self.trained: list[str] = []
        self.loaded: list[str] = []
        self.computed: list[str] = []

    def _paths(self, key: str, kind: str) -> tuple[Path, Path]:
        folder = self.root / kind / key[:2]
        return folder / f"{key}.safetensors", folder / f"{key}.json"

    @staticmethod
    def _record(meta_path: Path) -> dict | None:
        """An entry's JSON record; None if it is unreadable (torn) or not a record at all."""
        try:
            record = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return record if isinstance(record, dict) else None

    def _read(self, key: str, kind: str, *, warn: bool = True) -> tuple[Any, dict] | None:
        """The entry's tensors and record, or None (with a warning, unless ``warn`` is off) if it is missing,
        damaged or in the old pickle format."""
        blob, meta_path = self._paths(key, kind)
        if not meta_path.exists():
            return None
        meta, obj, problem = self._record(meta_path), None, None
        if meta is None:
            problem = f"cache entry {meta_path} is unreadable; rebuilding it"
        elif "format" not in meta:  # written by torch.save before entries were safetensors: never unpickled
            problem = (f"cache entry {meta_path} is an old pickle entry (written by torch.save), which is never "
                       "loaded; rebuilding it as safetensors")
        elif meta["format"] != tensorfile.FORMAT:
            problem = f"cache entry {meta_path} has format {meta['format']!r}, not {tensorfile.FORMAT!r}; rebuilding it"
        else:
            obj = self._load_tensors(blob, meta.get("sha256", ""))
            if obj is None:
                problem = (f"cache entry {blob} is missing, fails its checksum or is not a valid safetensors file; "
                           "rebuilding it")
        if problem is not None:
            if warn:
                warnings.warn(problem, stacklevel=3)
            return None
        return obj, meta

    @staticmethod
    def _load_tensors(blob: Path, sha256: str) -> Any | None:
        data = read_checked(blob, sha256)
        if data is None:
            return None
        try:
            return tensorfile.loads(data)
        except tensorfile.TensorFileError:  # a forged file with a matching checksum: refused like a damaged one
            return None

    def _agreed_read(self, key: str, kind: str, *, warn: bool = True) -> tuple[Any, dict] | None:
        """:meth:`_read` by rank 0, its answer on every rank (no rank may train what another loads)."""
        return agree(lambda: self._read(key, kind, warn=warn))

    def _claim(self, key: str, kind: str,
               about: dict[str, Any] | None) -> tuple[tuple[Any, dict] | None, EntryLock | None]:
        """The finished entry, or the lock that makes this process the one to build it.

        Waits (polling) while another shard holds the entry's lock, then loads what it wrote; if that
        shard died, its lock goes stale and this one takes over. A read-only cache takes no lock: it
        raises :class:`MissingCacheEntry` (naming ``about``) for an entry it lacks.
        """
        if self.read_only:
            cached = self._agreed_read(key, kind)
            if cached is None:
                raise self._missing(key, kind, about)
            return cached, None
        lock = EntryLock(self.root / "locks" / kind / f"{key}.lock")
        warn = True  # once per claim: the looks while waiting, and the one under the lock, would repeat it
        while True:
            cached = self._agreed_read(key, kind, warn=warn)
            warn = False
            if cached is not None:
                return cached, None
            if agree(lock.try_acquire):
                cached = self._agreed_read(key, kind, warn=False)  # finished between our look and our lock
                if cached is None:
                    return None, lock
                lock.release()
                return cached, None
            time.sleep(self.poll_s)

    def _missing(self, key: str, kind: str, about: dict[str, Any] | None) -> MissingCacheEntry:
        what = "weights" if kind == "models" else "outputs"
        return MissingCacheEntry(
            f"the model cache {self.root} has no {what} of the {describe(about)} (entry {key} is missing, damaged "
            f"or an old pickle entry), and this command only reads the cache: run `bench run` for this cell with "
            f"--cache {self.root} first")

    def _write(self, key: str, kind: str, obj: Any, config: dict, meta: dict,
               about: dict[str, Any] | None = None) -> None:
        if self.read_only:  # callers raise MissingCacheEntry before they build anything to write
            raise RuntimeError(f"the model cache {self.root} is read-only: nothing may be written to it")
        if not is_writer():
            return
        blob, meta_path = self._paths(key, kind)
        sha = write_checked_atomic(blob, tensorfile.dumps(obj))  # what it cannot keep: TypeError, nothing written
        record = {"key": key, "config": config, "meta": meta, "about": about or {}, "format": tensorfile.FORMAT,
                  "sha256": sha}
        write_bytes_atomic(meta_path, json.dumps(record, indent=1, default=str).encode())
        blob.with_suffix(".pt").unlink(missing_ok=True)  # the torch.save file of an old entry this one replaces

    def remember(self, kind: str, key: str, decide) -> dict[str, Any]:
        """A decision the cache keeps beside its models (``<root>/<kind>/<key>.json``): read if stored, else
        ``decide()``, stored (unless read-only) and returned."""
        path = self.root / kind / f"{key}.json"
        if path.exists():
            return json.loads(path.read_text())
        decision = decide()
        if not self.read_only:
            write_bytes_atomic(path, json.dumps(decision, sort_keys=True).encode())
        return decision

    def has_model(self, key: str) -> bool:
        """Whether a finished model entry exists for ``key`` (its record is written last; the checksum is
        verified only when the entry is loaded). An old pickle entry does not count: it will be rebuilt."""
        record = self._record(self._paths(key, "models")[1])
        return record is not None and record.get("format") == tensorfile.FORMAT

    def get_or_train(self, config: dict[str, Any], build: Callable[[], nn.Module],
                     train: Callable[[nn.Module], dict[str, Any]],
                     about: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
        """The model for ``config``: loaded if cached, else built, trained, stored.

        Args:
            config: everything that determines the trained weights.
            build: makes a fresh model (already seeded by the caller's config).
            train: trains the model in place and returns metadata to store (e.g. ``train_time_s``).
            about: what the model is (role, index, ...), recorded with the entry and named when missing.

        Returns:
            The model (on the CPU) and its metadata.
        """
        key = config_hash(config)
        model = build()  # first: a model that cannot be built (a typo) must not leave the entry locked
        cached, lock = self._claim(key, "models", about)
        if cached is not None:
            state, record = cached
            model.load_state_dict(state)
            self.loaded.append(key)
            return model, record["meta"] | {"key": key}
        try:
            meta = train(model)
            model.cpu()
            self._write(key, "models", model.state_dict(), config, meta, about)
        finally:
            if lock is not None:
                lock.release()
        self.trained.append(key)
        return model, meta | {"key": key}

    def outputs(self, model_key: str, split_key: str) -> dict[str, dict[str, Tensor]] | None:
        """Cached outputs of a model on the splits ``split_key`` names: ``{"logits": {split: Tensor},
        "labels": {split: Tensor}}`` (no ``labels`` in entries older than them), or None."""
        cached = self._agreed_read(config_hash({"model": model_key, "splits": split_key}), "outputs")
        return None if cached is None else _outputs_entry(cached[0])

    def outputs_or_compute(self, model_key: str, split_key: str, compute: Callable[[], dict[str, dict[str, Tensor]]],
                           about: dict[str, Any] | None = None) -> dict[str, dict[str, Tensor]]:
        """Cached outputs, or ``compute()`` them (which may train or unlearn a model) under the entry's
        lock and store them, so no two shards compute the same entry.

        Args:
            model_key: the model's key (a bank model's, or that of an unlearned model's configuration).
            split_key: the splits the outputs are on (the DataModule's split hash).
            compute: the outputs as ``{"logits": {split: Tensor}, "labels": {split: Tensor}}``.
            about: what the model is, recorded with the entry and named when a read-only cache lacks it.
        """
        key = config_hash({"model": model_key, "splits": split_key})
        cached, lock = self._claim(key, "outputs", about)
        if cached is not None:
            return _outputs_entry(cached[0])
        try:
            outputs = compute()
            self.store_outputs(model_key, split_key, outputs, about)
        finally:
            if lock is not None:
                lock.release()
        self.computed.append(key)
        return outputs

    def store_outputs(self, model_key: str, split_key: str, outputs: dict[str, dict[str, Tensor]],
                      about: dict[str, Any] | None = None) -> None:
        config = {"model": model_key, "splits": split_key}
        self._write(config_hash(config), "outputs", outputs, config, {}, about)
