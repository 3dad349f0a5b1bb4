"""Stable hashes and seeds: the keys of cached artefacts and the seeds of every model."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def config_hash(config: Any) -> str:
    """A stable hash of a JSON-serialisable configuration."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def derive_seed(*parts: object) -> int:
    """A 31-bit seed determined by ``parts`` (stable across processes and machines)."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF
