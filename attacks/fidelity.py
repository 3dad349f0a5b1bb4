"""TRW's similarity fidelity (docs/protocol.md 7): how well a method's class similarity ranks the retained
classes the way retrained models do. A diagnostic, reported with every result of a method that has
a ``class_similarity`` (TRW, RWFT)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scipy.stats import spearmanr
from torch import Tensor

from attacks.base import MetricCallback
from attacks.outputs import Outputs


def retrained_distribution(reference_probs: Sequence[Tensor], forget_classes: Sequence[int]) -> Tensor:
    """Mean probability per class that retrained models give to D_f, renormalised over retained classes."""
    mean = sum(p.double().mean(dim=0) for p in reference_probs) / len(reference_probs)
    mean[list(forget_classes)] = 0.0
    return mean / mean.sum()


def similarity_fidelity(similarity: Tensor, reference_probs: Sequence[Tensor], forget_classes: Sequence[int]) -> float:
    """Spearman rank correlation, over the retained classes, between the similarity and the
    retained-class distribution the references give to D_f (1 = same order)."""
    return rank_agreement(similarity, retrained_distribution(reference_probs, forget_classes), forget_classes)


def rank_agreement(a: Tensor, b: Tensor, forget_classes: Sequence[int]) -> float:
    """Spearman rank correlation of two per-class vectors over the retained classes."""
    retained = [k for k in range(len(a)) if k not in set(forget_classes)]
    return float(spearmanr(a[retained].double().numpy(), b[retained].double().numpy()).statistic)


class SimilarityFidelity(MetricCallback):
    """Writes ``similarity_fidelity`` into the row's diagnostics for methods that have a similarity, and,
    for TRW, the similarity's redundancy (its rank agreement with the renormalised original's mean
    distribution on D_f: near 1, the tilt only sharpens what p~ already says) and ``tilt_tv`` (how far
    the tilt moves the target from p~)."""

    metrics = ()  # a diagnostic, not a score

    def score(self, method: Outputs, module: Any = None) -> None:
        similarity = getattr(module, "class_similarity", None)
        if similarity is None:
            return
        ctx = self.context
        refs = ctx.require("references")
        ctx.diagnostics["similarity_fidelity"] = similarity_fidelity(
            similarity.cpu(), [r.probs("D_f") for r in refs], ctx.forget_classes)
        ctx.diagnostics["class_similarity"] = [round(float(v), 6) for v in similarity.cpu()]
        base = getattr(module, "forget_base_distribution", None)
        if base is not None:
            ctx.diagnostics["similarity_redundancy"] = rank_agreement(similarity.cpu(), base.cpu(), ctx.forget_classes)
            ctx.diagnostics["tilt_tv"] = float(module.tilt_tv)
