"""Splitting one benchmark grid into N disjoint shards, one per job of a job array.

Work is listed in one fixed order (the fully expanded grid; the bank and shadow fits of each
(seed, forget classes) group), identical in every job given the same command line, and shard I takes
the items whose position modulo N is I. The rule needs no coordination and no shared state: the
shards' parts are disjoint and together cover the grid. Whatever a shard needs beyond its own part
(a bank model another shard trains) it waits for through the cache's per-entry locks, or trains
itself if nobody has started it, so no model is trained twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from benchmark.core.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based, so ``--shard $SLURM_ARRAY_TASK_ID/N`` with ``--array=0-N-1``)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"--shard I/N needs N >= 1 and 0 <= I < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        """``"2/8"`` -> the third of eight shards; None or ``""`` -> the whole grid."""
        if not text:
            return cls()
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None:
            raise ConfigError(f"--shard takes I/N (0-based shard I of N, e.g. 0/4), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def whole(self) -> bool:
        return self.count == 1

    def owns(self, position: int) -> bool:
        return position % self.count == self.index

    def select(self, items: Iterable[T]) -> list[T]:
        """The items at this shard's positions, in their order."""
        return [item for position, item in enumerate(items) if self.owns(position)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def split(items: Sequence[T], count: int) -> list[list[T]]:
    """Every shard's part of ``items``: disjoint, covering, in order (what the jobs of an array get)."""
    return [Shard(i, count).select(items) for i in range(count)]


def blocks(items: Sequence[T], count: int) -> list[list[T]]:
    """``items`` cut into at most ``count`` contiguous runs of near-equal length, in order: the units a shard
    fits as one group (so each of ``count`` shards can take one, and a group still trains together)."""
    size = -(-len(items) // max(count, 1))
    return [list(items[i:i + size]) for i in range(0, len(items), size)] if items else []
