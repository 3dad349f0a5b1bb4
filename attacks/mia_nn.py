"""MIA-NN (docs/protocol.md, "MIA-NN"): class-membership inference through the neighbouring classes.

Both modes are calibrated against a null computed by the same code: the attack with the scored model
replaced by each of the bank's further retrained models (neither references nor the oracle). A retrained
model is what a perfect method would give, so the null's mean is the score to match and its standard
deviation is what a difference between two scores is worth.
"""

from __future__ import annotations

import statistics

import numpy as np

from attacks.base import MetricCallback
from attacks.functional import mia_nn_reference, mia_nn_shadow, neighbour_classes, neighbour_features
from attacks.metrics import MetricInfo
from attacks.outputs import Outputs


def _null(key: str, meaning: str) -> tuple[MetricInfo, MetricInfo]:
    label = key.replace("MIA_NN", "MIA-NN").replace("_shadow", " (shadow)")
    return (MetricInfo(f"{key}_null_mean", f"{label} null", "%", "none", f"mean of {meaning} over the null's "
                       "retrained models (the score a perfect method gets; the oracle row reports it)"),
            MetricInfo(f"{key}_null_sd", f"{label} null sd", "%", "none",
                       f"standard deviation of {meaning} over the null's retrained models"))


class MIANN(MetricCallback):
    """Reference mode (``MIA_NN``, the reported score) and, when unlearned in-shadows exist, shadow mode
    (``MIA_NN_shadow``), each with its null. The oracle row reports the null means (a retrained model's
    expected score) and the same null standard deviations."""

    metrics = (
        MetricInfo("MIA_NN", "MIA-NN", "%", "oracle",  # in protocol 2 the oracle's MIA-NN is the null mean
                   "the neighbour-class attack: an RBF SVC, trained on every reference's D_f sample (class-weighted), "
                   "tells the model's probabilities of the k = 3 retained classes the references favour for D_f from "
                   "the references'; its balanced accuracy on T_f (best: the null mean, what retrained models score)",
                   column=True, gap="privacy", reference="MIA_NN_null_mean", table="privacy"),
        *_null("MIA_NN", "MIA-NN"),
        MetricInfo("MIA_NN_shadow", "MIA-NN (shadow)", "%", "oracle",
                   "MIA-NN's full-attacker variant: the SVC learns the method's unlearned in-shadows against the "
                   "references on D_f, then tells the model from the oracle on T_f (best: its null mean)",
                   reference="MIA_NN_shadow_null_mean"),
        *_null("MIA_NN_shadow", "shadow-mode MIA-NN"),
    )

    def _neighbours(self) -> list[int]:
        ctx = self.context
        if "neighbour_classes" not in ctx.diagnostics:
            refs = ctx.require("references")
            ctx.diagnostics["neighbour_classes"] = neighbour_classes(
                [r.probs("D_f") for r in refs], ctx.forget_classes, ctx.options.neighbours)
        return ctx.diagnostics["neighbour_classes"]

    def _features(self, outputs: Outputs, split: str) -> np.ndarray:
        return neighbour_features(outputs.logits[split], self._neighbours(), self.context.options.nn_feature)

    def _reference_mode(self, target: Outputs) -> float:
        refs = self.context.require("references")
        return mia_nn_reference([self._features(r, "D_f") for r in refs], self._features(target, "D_f"),
                                [self._features(r, "T_f") for r in refs], self._features(target, "T_f"),
                                **self.context.options.svc)

    def _shadow_mode(self, shadows: list[Outputs], target: Outputs) -> float:
        refs = self.context.require("references")
        return mia_nn_shadow([self._features(r, "D_f") for r in refs], [self._features(s, "D_f") for s in shadows],
                             self._features(self.context.oracle, "T_f"), self._features(target, "T_f"),
                             **self.context.options.svc)

    def _retrained(self) -> list[Outputs]:
        """The null's models: the bank's retrained models that are neither references nor the oracle."""
        shadows, scored = self.context.require("retrain_shadows")
        return [*shadows, scored]

    def _nulls(self) -> dict[str, float]:
        """Both modes' null mean and sd, computed once per cell and shared by every method's row. In shadow
        mode each null model is scored with the other null models as retraining's "unlearned shadows"."""

        def compute() -> dict[str, float]:
            retrained = self._retrained()
            reference = [self._reference_mode(g) for g in retrained]
            shadow = [self._shadow_mode(retrained[:j] + retrained[j + 1:], g) for j, g in enumerate(retrained)]
            return {**_summary("MIA_NN", reference), **_summary("MIA_NN_shadow", shadow)}

        return self.context.once("mia_nn_nulls", compute)

    def score_method(self, outputs: Outputs) -> dict[str, float]:
        scores = {"MIA_NN": self._reference_mode(outputs)}
        if self.context.method_shadows is not None:
            scores["MIA_NN_shadow"] = self._shadow_mode(self.context.method_shadows(), outputs)
        if self.context.retrain_shadows is not None:
            scores |= self._nulls()
        return scores

    def score_oracle(self) -> dict[str, float]:
        if self.context.retrain_shadows is None:  # no null models: the oracle itself is the only retrained model
            return {"MIA_NN": self._reference_mode(self.context.oracle)}
        nulls = self._nulls()
        return {"MIA_NN": nulls["MIA_NN_null_mean"], "MIA_NN_shadow": nulls["MIA_NN_shadow_null_mean"], **nulls}


def _summary(key: str, values: list[float]) -> dict[str, float]:
    return {f"{key}_null_mean": statistics.fmean(values),
            f"{key}_null_sd": statistics.stdev(values) if len(values) > 1 else float("nan")}
