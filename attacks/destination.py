"""Where the forget-class samples go (the paper's central picture): the mean probability a model gives
to each class over D_f, for the unlearned model and for the oracle. A diagnostic written into every row,
so the leaderboard's plots are drawn from rows alone."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from attacks.base import MetricCallback
from attacks.outputs import Outputs

DIGITS = 5  # rounding of the stored probabilities: enough for a plot, small in the row


def mean_forget_distribution(outputs: Outputs) -> list[float]:
    """Mean softmax probability per class over D_f."""
    mean: Tensor = outputs.probs("D_f").double().mean(dim=0)
    return [round(float(p), DIGITS) for p in mean]


class ForgetDestination(MetricCallback):
    """Writes ``forget_destination = {"method": [...], "oracle": [...]}`` (one probability per class)."""

    metrics = ()  # a diagnostic, not a score

    def score(self, method: Outputs, module: Any = None) -> None:
        ctx = self.context
        if not method.finite():
            return  # a diverged model has no distribution to draw
        ctx.diagnostics["forget_destination"] = {"method": mean_forget_distribution(method),
                                                 "oracle": mean_forget_distribution(ctx.oracle)}
