"""Named phases of the engine's work (bank training, unlearning, shadow unlearning), timed on request.

The engine marks each phase with ``FitSettings.phase(name)``; a :class:`PhaseTimer` attached to the fit
settings adds up the wall time of each. ``bench perf`` splits a grid run's time this way.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator

BANK_TRAINING = "bank_training"
UNLEARNING = "unlearning"
SHADOW_UNLEARNING = "shadow_unlearning"


class PhaseTimer:
    """Exclusive wall time per phase: time spent in a nested phase is counted there, not in its parent.

    A phase that ``ABSORBED`` pairs with its enclosing phase stays in that phase: unlearning an in-shadow
    for U-LiRA is shadow unlearning, not the cell's own unlearning.
    """

    ABSORBED = frozenset({(SHADOW_UNLEARNING, UNLEARNING)})

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []  # [phase, start of its current slice]

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self._stack and (self._stack[-1][0], name) in self.ABSORBED:
            yield
            return
        now = time.perf_counter()
        if self._stack:
            parent = self._stack[-1]
            self.seconds[parent[0]] += now - parent[1]
        self._stack.append([name, now])
        try:
            yield
        finally:
            done = self._stack.pop()
            now = time.perf_counter()
            self.seconds[done[0]] += now - done[1]
            if self._stack:
                self._stack[-1][1] = now
