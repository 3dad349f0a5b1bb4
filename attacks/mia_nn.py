"""MIA-NN (SPEC section 3): class-membership inference through the neighbouring classes."""

from __future__ import annotations

from attacks.base import MetricCallback
from attacks.functional import mia_nn_reference, mia_nn_shadow, neighbour_classes, neighbour_features
from attacks.metrics import MetricInfo
from attacks.outputs import Outputs


class MIANN(MetricCallback):
    """Reference mode (``MIA_NN``, the reported score) and, when unlearned in-shadows exist, shadow mode
    (``MIA_NN_shadow``). For the oracle, g is the oracle in reference mode; in shadow mode the scored
    model is a further retrained model, as for U-LiRA's noise floor (SPEC 4.6-4.7)."""

    metrics = (
        MetricInfo("MIA_NN", "MIA-NN", "%", "oracle",
                   "the neighbour-class attack: an RBF SVC tells the model's probabilities of the k = 3 retained "
                   "classes the references favour for D_f from the references'; its balanced accuracy on T_f "
                   "(best: indistinguishable from the oracle, whose own score is the attack's noise floor)",
                   column=True, gap="privacy"),
        MetricInfo("MIA_NN_shadow", "MIA-NN (shadow)", "%", "oracle",
                   "MIA-NN's full-attacker variant, trained on the method's unlearned in-shadows"),
    )

    def _neighbours(self) -> list[int]:
        ctx = self.context
        if "neighbour_classes" not in ctx.diagnostics:
            refs = ctx.require("references")
            ctx.diagnostics["neighbour_classes"] = neighbour_classes(
                [r.probs("D_f") for r in refs], ctx.forget_classes, ctx.options.neighbours)
        return ctx.diagnostics["neighbour_classes"]

    def _features(self, outputs: Outputs, split: str):
        return neighbour_features(outputs.logits[split], self._neighbours(), self.context.options.nn_feature)

    def _reference_mode(self, target: Outputs) -> float:
        refs = self.context.require("references")
        return mia_nn_reference([self._features(r, "D_f") for r in refs], self._features(target, "D_f"),
                                [self._features(r, "T_f") for r in refs], self._features(target, "T_f"),
                                seed=self.context.seed)

    def _shadow_mode(self, shadows: list[Outputs], target: Outputs) -> float:
        refs = self.context.require("references")
        return mia_nn_shadow([self._features(r, "D_f") for r in refs], [self._features(s, "D_f") for s in shadows],
                             self._features(self.context.oracle, "T_f"), self._features(target, "T_f"),
                             seed=self.context.seed)

    def score_method(self, outputs: Outputs) -> dict[str, float]:
        scores = {"MIA_NN": self._reference_mode(outputs)}
        if self.context.method_shadows is not None:
            scores["MIA_NN_shadow"] = self._shadow_mode(self.context.method_shadows(), outputs)
        return scores

    def score_oracle(self) -> dict[str, float]:
        scores = {"MIA_NN": self._reference_mode(self.context.oracle)}
        if self.context.retrain_shadows is not None:
            shadows, scored = self.context.retrain_shadows()
            scores["MIA_NN_shadow"] = self._shadow_mode(shadows, scored)
        return scores
