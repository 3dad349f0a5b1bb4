"""MIA-efficacy and TV (docs/protocol.md, section 2) as callbacks over the functional core."""

from __future__ import annotations

from attacks.base import MetricCallback
from attacks.functional import mia_efficacy, tv_distance
from attacks.metrics import MetricInfo
from attacks.outputs import Outputs


class MIAEfficacy(MetricCallback):
    """SalUn's MIA-efficacy: the share of D_f an SVC trained on D_r-vs-T_r calls non-member."""

    metrics = (MetricInfo("MIA_eff", "MIA-eff", "%", "oracle",
                          "SalUn's MIA-efficacy: an RBF SVC (C=3, gamma=\"auto\") trained on true-label confidence, "
                          "members = a class-balanced sample of D_r as large as T_r, non-members = T_r; the share of "
                          "D_f it calls non-member (`--mia-signal entropy` or `modified_entropy` as options)",
                          column=True, gap="avg"),)

    def compute(self, outputs: Outputs) -> dict[str, float]:
        o = outputs
        return {"MIA_eff": mia_efficacy(o.probs("D_r"), o.labels["D_r"], o.probs("T_r"), o.labels["T_r"],
                                        o.probs("D_f"), o.labels["D_f"], signal=self.context.options.mia_signal,
                                        seed=self.context.seed)}


class TVDistance(MetricCallback):
    """Mean total-variation distance to the oracle's predictive distribution on D_f."""

    metrics = (MetricInfo("TV", "TV", "fraction", "low", "mean over D_f of the total-variation distance between the "
                          "model's and the oracle's predictions (0 = behaves like retraining)", column=True),)

    def compute(self, outputs: Outputs) -> dict[str, float]:
        return {"TV": tv_distance(outputs.probs("D_f"), self.context.oracle.probs("D_f"))}
