"""RMIA (docs/protocol.md, "RMIA"; Zarifzadeh, Liu and Shokri, "Low-Cost High-Power Membership Inference
Attacks", ICML 2024, arXiv 2312.03262), computed from the bank's outputs: nothing is trained for it.

RMIA scores a sample x for a target model θ by comparing it with population samples z: the pairwise likelihood
ratio LR(x, z) = [p(x|θ) / p(x)] / [p(z|θ) / p(z)], p(·) the label's probability averaged over reference models,
and the score is the fraction of z with LR(x, z) > γ. Here x runs over the forget samples D_f and z over the
retained test samples T_r, which no model trained on (V is left to hyperparameter selection, and ``bench score``
does not read it). The offline variant's references are the M retrained references (D_f is OUT for them), with
the paper's linear approximation of p(x); the online variant adds the S in-shadows, trained on D, as IN models.

The membership question is the class's: do the scored model's D_f scores look like those of a model that never
saw the class? The AUC separates the scored model's D_f scores (positives) from the oracle's (negatives), the
oracle being a retrained model that is not a reference. Its null: the same AUC with each of the bank's further
retrained models as the scored model. (Comparing D_f with T_f under one model, the sample-level game, says
nothing here: every forget-class sample beats every population sample under the original, so the scores tie.)
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from torch import Tensor

from attacks.base import MetricCallback
from attacks.functional import rmia_marginal, rmia_scores, roc_summary, true_label_confidence
from attacks.metrics import MetricInfo
from attacks.outputs import Outputs

OFFLINE, ONLINE = "RMIA", "RMIA_online"  # the key prefix of each variant
POPULATION = "T_r"  # the population z: the retained test samples, which no model of the cell trained on


def _variant_metrics(prefix: str, label: str, column: bool, which: str) -> tuple[MetricInfo, ...]:
    null = f"the AUC of each of the null's retrained models against the oracle ({which})"
    return (
        MetricInfo(f"{prefix}_AUC", f"{label} AUC", "AUC", "oracle",
                   f"RMIA ({which}): the fraction of retained test samples z (T_r) whose pairwise likelihood "
                   "ratio the forget sample beats, for each D_f sample; the AUC of the model's scores against the "
                   "oracle's (best: the null mean, what retrained models score)",
                   column=column, reference=f"{prefix}_AUC_null_mean", table="privacy"),
        MetricInfo(f"{prefix}_TPR1", f"{label} TPR@1%", "%", "low",
                   f"RMIA's ({which}) true-positive rate at 1% false positives", table="privacy"),
        MetricInfo(f"{prefix}_TPR01", f"{label} TPR@0.1%", "%", "low",
                   f"RMIA's ({which}) true-positive rate at 0.1% false positives", table="privacy"),
        MetricInfo(f"{prefix}_AUC_null_mean", f"{label} AUC null", "AUC", "none",
                   f"mean of {null}: the score a perfect method gets", table="privacy"),
        MetricInfo(f"{prefix}_AUC_null_sd", f"{label} AUC null sd", "AUC", "none",
                   f"standard deviation of {null}", table="privacy"),
    )


def _probabilities(outputs: Outputs, split: str) -> Tensor:
    """p(x|θ): the model's softmax probability of each sample's own label (the authors' signal, temperature 1)."""
    return true_label_confidence(outputs.logits[split].double().softmax(dim=1), outputs.labels[split])


@dataclass(frozen=True)
class _Attack:
    """One variant's attack in one cell: p(x) of the forget samples and p(z) of the population, from its
    reference models (the same for every method of the cell)."""

    marginal_x: Tensor
    marginal_z: Tensor

    @classmethod
    def build(cls, out_models: list[Outputs], in_models: list[Outputs] | None) -> _Attack:
        def marginal(split: str) -> Tensor:
            ins = None if in_models is None else torch.stack([_probabilities(o, split) for o in in_models])
            return rmia_marginal(torch.stack([_probabilities(o, split) for o in out_models]), ins)

        return cls(marginal("D_f"), marginal(POPULATION))

    def scores(self, target: Outputs) -> Tensor:
        """RMIA's score of each D_f sample for ``target``."""
        return rmia_scores(_probabilities(target, "D_f"), self.marginal_x, _probabilities(target, POPULATION),
                           self.marginal_z)


class RMIA(MetricCallback):
    """Offline (``RMIA_*``, the M references as OUT models) and, where the cell has its in-shadows, online
    (``RMIA_online_*``, the in-shadows as IN models too), each with its null. The oracle row is retraining scored
    as the method: the bank's further retrained model that U-LiRA's oracle row scores, against the oracle."""

    metrics = (*_variant_metrics(OFFLINE, "RMIA", True, "offline"),
               *_variant_metrics(ONLINE, "RMIA (online)", False, "online"))

    def _variants(self) -> list[str]:
        return [OFFLINE] if self.context.in_shadows is None else [OFFLINE, ONLINE]

    def _attack(self, prefix: str) -> _Attack:
        ctx = self.context

        def build() -> _Attack:
            ins = ctx.require("in_shadows") if prefix == ONLINE else None
            return _Attack.build(ctx.require("references"), ins)

        return ctx.once(f"rmia_attack_{prefix}", build)

    def _roc(self, prefix: str, target: Outputs) -> dict[str, float]:
        """AUC and low-FPR TPRs of ``target``'s D_f scores (positives) against the oracle's (negatives)."""
        attack = self._attack(prefix)
        negative = self.context.once(f"rmia_oracle_{prefix}", lambda: attack.scores(self.context.oracle))
        roc = roc_summary(attack.scores(target), negative)
        return {f"{prefix}_AUC": roc["AUC"], f"{prefix}_TPR1": roc["TPR1"], f"{prefix}_TPR01": roc["TPR01"]}

    def _null(self, prefix: str) -> dict[str, float]:
        """Computed once per cell: each further retrained model (neither a reference nor the oracle) scored
        as if a method had produced it."""

        def compute() -> dict[str, float]:
            shadows, scored = self.context.require("retrain_shadows")
            aucs = [self._roc(prefix, g)[f"{prefix}_AUC"] for g in (*shadows, scored)]
            return {f"{prefix}_AUC_null_mean": statistics.fmean(aucs),
                    f"{prefix}_AUC_null_sd": statistics.stdev(aucs) if len(aucs) > 1 else float("nan")}

        return self.context.once(f"rmia_null_{prefix}", compute)

    def _summary(self, target: Outputs) -> dict[str, float]:
        return {k: v for p in self._variants() for k, v in (self._roc(p, target) | self._null(p)).items()}

    def score_method(self, outputs: Outputs) -> dict[str, float]:
        return self._summary(outputs)

    def score_oracle(self) -> dict[str, float]:
        _, scored = self.context.require("retrain_shadows")
        return self._summary(scored)
