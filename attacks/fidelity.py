"""TRW's similarity fidelity (SPEC 6.5): how well a method's class similarity ranks the retained
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
    retained = [k for k in range(len(similarity)) if k not in set(forget_classes)]
    target = retrained_distribution(reference_probs, forget_classes)
    return float(spearmanr(similarity[retained].double().numpy(), target[retained].numpy()).statistic)


class SimilarityFidelity(MetricCallback):
    """Writes ``similarity_fidelity`` into the row's diagnostics for methods that have a similarity."""

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
