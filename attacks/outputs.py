"""What every metric and attack reads: a model's logits and the labels on each evaluation split.

Attacks never run a model themselves; the engine computes :class:`Outputs` once per model and split
(``benchmark.engine.outputs``) and hands them over. A user with their own models can build
``Outputs`` directly and call the functions of :mod:`attacks.functional`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor, nn


@dataclass(frozen=True)
class Outputs:
    """Logits and labels of one model on every evaluation split (D_f, D_r, T_f, T_r, V)."""

    logits: dict[str, Tensor]
    labels: dict[str, Tensor]

    def probs(self, split: str) -> Tensor:
        return self.logits[split].softmax(dim=1)

    def finite(self) -> bool:
        """False for a diverged model (any non-finite logit): its scores do not exist."""
        return all(bool(t.isfinite().all()) for t in self.logits.values())


class OutputSource(Protocol):
    """Anything that turns a model into its :class:`Outputs` (the engine's ``OutputsProvider``)."""

    def of(self, model: nn.Module | Callable[[], nn.Module], model_id: str,
           cached_key: str | None = None) -> Outputs: ...
