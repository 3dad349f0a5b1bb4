"""U-LiRA (docs/protocol.md, "U-LiRA"; after Hayes et al. 2024): a per-example likelihood-ratio attack that
asks, for each forget sample, whether a model looks like an in-shadow unlearned with the method or like a
model retrained without the forget class.

Leave-one-model-out: the positives are the scored model and the S unlearned in-shadows, the negatives the
oracle and the M references, and every one of them is scored with Gaussians fitted on all the others. One
pair of models (the scored model against the oracle) is kept as ``ULiRA_pair``, the protocol-1 score.
"""

from __future__ import annotations

import statistics

import torch

from attacks.base import MetricCallback
from attacks.functional import (
    logit_confidence,
    ulira_leave_one_out,
    ulira_model_summary,
    ulira_null,
    ulira_scores,
    ulira_summary,
)
from attacks.metrics import MetricInfo
from attacks.outputs import Outputs

NULL_DRAWS = 200  # random splits of the retrained models behind ULiRA_null_sd: its own sd is about 5% of it


def _psi(outputs: Outputs) -> torch.Tensor:
    return logit_confidence(outputs.logits["D_f"], outputs.labels["D_f"])


class ULiRA(MetricCallback):
    """For the method: positives = the unlearned model and its S unlearned in-shadows; for the oracle row
    (retraining seen as the method): a further retrained model and S more. Negatives: the oracle and the
    M references. A model is never scored by a Gaussian fitted on itself."""

    metrics = (
        MetricInfo("ULiRA", "U-LiRA", "%", 50.0,
                   "per forget sample, Gaussians over the logit-scaled confidence of the method's side (the model and "
                   "S in-shadows unlearned with the method) and of retrained models (the oracle and M references); "
                   "every model is scored leave-one-model-out; balanced accuracy at 0, every model weighted equally "
                   "(50 = cannot tell the method from retraining; `--per-example-variance` for a variance per sample)",
                   column=True, gap="privacy", reference=50.0, table="privacy"),
        MetricInfo("ULiRA_AUC", "U-LiRA AUC", "AUC", 0.5, "area under U-LiRA's ROC curve over every (model, sample)"),
        MetricInfo("ULiRA_TPR1", "U-LiRA TPR@1%", "%", "low", "U-LiRA's true-positive rate at 1% false positives"),
        MetricInfo("ULiRA_TPR01", "U-LiRA TPR@0.1%", "%", "low", "U-LiRA's true-positive rate at 0.1% false positives"),
        MetricInfo("ULiRA_pair", "U-LiRA (one pair)", "%", 50.0,
                   "protocol 1's U-LiRA: only the scored model against the oracle, Gaussians from the rest"),
        MetricInfo("ULiRA_null_sd", "U-LiRA null sd", "%", "none",
                   f"standard deviation of U-LiRA over {NULL_DRAWS} random splits of the cell's retrained models into "
                   "the two sides (its null; the null mean is 50 by exchangeability)"),
    )

    def _scores(self, side: list[Outputs]) -> tuple[torch.Tensor, torch.Tensor]:
        """Leave-one-model-out scores of the positives ``side`` (the scored model first) and of the
        negatives (the oracle first, then the references)."""
        ctx = self.context
        positives = torch.stack([_psi(o) for o in side])
        negatives = torch.stack([_psi(o) for o in (ctx.oracle, *ctx.require("references"))])
        return ulira_leave_one_out(positives, negatives, per_example_variance=ctx.options.per_example_variance)

    def _pair(self, side: list[Outputs]) -> float:
        """The protocol-1 score: the scored model (positive) against the oracle (negative) only."""
        ctx = self.context
        in_stats = torch.stack([_psi(s) for s in side[1:]])
        out_stats = torch.stack([_psi(r) for r in ctx.require("references")])
        per_example = ctx.options.per_example_variance
        positive = ulira_scores(_psi(side[0]), in_stats, out_stats, per_example_variance=per_example)
        negative = ulira_scores(_psi(ctx.oracle), in_stats, out_stats, per_example_variance=per_example)
        return ulira_summary(positive, negative)["ULiRA"]

    def _null_sd(self) -> dict[str, float]:
        """Computed once per cell: the retrained models are the same for every method."""

        def compute() -> dict[str, float]:
            ctx = self.context
            shadows, scored = ctx.require("retrain_shadows")
            retrained = torch.stack([_psi(o) for o in (ctx.oracle, *ctx.require("references"), *shadows, scored)])
            null = ulira_null(retrained, len(shadows) + 1, draws=NULL_DRAWS, seed=ctx.seed,
                              per_example_variance=ctx.options.per_example_variance)
            return {"ULiRA_null_sd": statistics.stdev(null.tolist())}

        return self.context.once("ulira_null", compute)

    def _summary(self, side: list[Outputs], positive: torch.Tensor, negative: torch.Tensor) -> dict[str, float]:
        return ulira_model_summary(positive, negative) | {"ULiRA_pair": self._pair(side)} | self._null_sd()

    def score_method(self, outputs: Outputs) -> dict[str, float]:
        side = [outputs, *self.context.require("method_shadows")]
        positive, negative = self._scores(side)
        if torch.isfinite(positive[0]).all() and torch.isfinite(negative[0]).all():
            # the scored model's and the oracle's own scores, kept so the leaderboard can draw their
            # distributions without re-running anything
            self.context.diagnostics["ulira_scores"] = {"method": _rounded(positive[0]),
                                                        "oracle": _rounded(negative[0])}
        return self._summary(side, positive, negative)

    def score_oracle(self) -> dict[str, float]:
        shadows, scored = self.context.require("retrain_shadows")
        side = [scored, *shadows]
        return self._summary(side, *self._scores(side))


def _rounded(scores: torch.Tensor, digits: int = 3) -> list[float]:
    return [round(float(s), digits) for s in scores]
