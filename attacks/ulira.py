"""U-LiRA (SPEC section 4, after Hayes et al. 2024): a per-example likelihood-ratio attack that asks,
for each forget sample, whether the model looks like an unlearned in-shadow or like a retrained one."""

from __future__ import annotations

import torch

from attacks.base import MetricCallback
from attacks.functional import logit_confidence, ulira_scores, ulira_summary
from attacks.metrics import MetricInfo
from attacks.outputs import Outputs


def _psi(outputs: Outputs) -> torch.Tensor:
    return logit_confidence(outputs.logits["D_f"], outputs.labels["D_f"])


class ULiRA(MetricCallback):
    """Positives: the scored model on D_f; negatives: the oracle on D_f. The Gaussians are fitted on
    the unlearned in-shadows (in) and the references (out), never on a scored model."""

    metrics = (
        MetricInfo("ULiRA", "U-LiRA", "%", "oracle",
                   "per forget sample, a Gaussian over the logit-scaled confidence of S in-shadows unlearned with "
                   "the method (in) and of M references (out); the log-likelihood ratio scores the method's model "
                   "against the oracle: balanced accuracy at 0 (best: indistinguishable from the oracle, whose own "
                   "score is the attack's noise floor; `--per-example-variance` for a variance per example)",
                   column=True, gap="privacy"),
        MetricInfo("ULiRA_AUC", "U-LiRA AUC", "AUC", "oracle", "area under U-LiRA's ROC curve"),
        MetricInfo("ULiRA_TPR1", "U-LiRA TPR@1%", "%", "oracle", "U-LiRA's true-positive rate at 1% false positives"),
    )

    def _scores(self, shadows: list[Outputs], scored: Outputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example scores of the scored model (positives) and of the oracle (negatives) on D_f."""
        ctx = self.context
        in_stats = torch.stack([_psi(s) for s in shadows])
        out_stats = torch.stack([_psi(r) for r in ctx.require("references")])
        per_example = ctx.options.per_example_variance
        positive = ulira_scores(_psi(scored), in_stats, out_stats, per_example_variance=per_example)
        negative = ulira_scores(_psi(ctx.oracle), in_stats, out_stats, per_example_variance=per_example)
        return positive, negative

    def score_method(self, outputs: Outputs) -> dict[str, float]:
        positive, negative = self._scores(self.context.require("method_shadows"), outputs)
        summary = ulira_summary(positive, negative)
        if torch.isfinite(positive).all() and torch.isfinite(negative).all():
            # kept in the row so the leaderboard can draw the score distributions without re-running anything
            self.context.diagnostics["ulira_scores"] = {"method": _rounded(positive), "oracle": _rounded(negative)}
        return summary

    def score_oracle(self) -> dict[str, float]:
        shadows, scored = self.context.require("retrain_shadows")
        return ulira_summary(*self._scores(shadows, scored))


def _rounded(scores: torch.Tensor, digits: int = 3) -> list[float]:
    return [round(float(s), digits) for s in scores]
