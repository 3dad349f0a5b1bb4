"""The tuning objective (docs/protocol.md, section 8): one number per method and tuning cell, from V alone.

``bench tune`` minimises it for every method with the same budget. It needs no attack training, so a trial
costs one unlearning fit and one inference pass on V:

- ``forget_gap``: |forget-sample accuracy on V - the oracle's|, as a fraction;
- ``utility_gap``: |retained-sample accuracy on V - the oracle's|, as a fraction;
- ``tv``: the mean over V's forget samples of the total-variation distance between the method's predicted
  distribution and the references' mean distribution (what MIA-NN's features see: the mass given to the
  neighbouring classes);
- ``confidence_gap``: how far the method's mean forget-class logit-confidence on V's forget samples, the
  statistic U-LiRA fits Gaussians to, sits from the references': ``|d| / (|d| + s)``, with ``d`` the difference
  of the means and ``s`` the references' spread (the standard deviation of their M means). 0 when the method
  is where the references are, 1/2 at one reference spread, towards 1 beyond.

``privacy`` (the default) is the sum of all four; ``utility`` (the classic criterion) is the first two.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from attacks.outputs import Outputs

OBJECTIVES = ("privacy", "utility")
PARTS = {"privacy": ("forget_gap", "utility_gap", "tv", "confidence_gap"), "utility": ("forget_gap", "utility_gap")}


def _forget_mask(labels: Tensor, forget_classes: Sequence[int]) -> Tensor:
    return torch.isin(labels, torch.tensor(list(forget_classes), dtype=labels.dtype))


def _accuracy(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).double().mean()) if len(labels) else float("nan")


def logit_confidence(probs: Tensor, classes: Tensor) -> Tensor:
    """``log p_c - log(1 - p_c)`` of each sample's class ``c`` (clamped away from 0 and 1 to stay finite)."""
    p = probs.gather(1, classes[:, None]).squeeze(1).double().clamp(1e-12, 1 - 1e-12)
    return p.log() - (-p).log1p()


def objective_parts(method: Outputs, oracle: Outputs, references: Sequence[Outputs],
                    forget_classes: Sequence[int], split: str = "V") -> dict[str, float]:
    """Every part of the objective on ``split`` (V), as fractions and distances in [0, 1].

    Args:
        method: the unlearned model's outputs.
        oracle: the tuning cell's oracle (retrained without the forget classes).
        references: the tuning cell's M further retrained models (at least two, for their spread).
        forget_classes: the cell's forget classes.
        split: the split to score (the validation split V: the leaderboard's test splits are never seen).
    """
    if len(references) < 2:
        raise ValueError(f"the objective's confidence gap needs at least 2 references, got {len(references)}")
    labels = method.labels[split]
    forget = _forget_mask(labels, forget_classes)
    if not forget.any() or forget.all():
        raise ValueError(f"split {split} needs both forget-class and retained samples")

    def accuracies(outputs: Outputs) -> tuple[float, float]:
        logits = outputs.logits[split]
        return _accuracy(logits[forget], labels[forget]), _accuracy(logits[~forget], labels[~forget])

    (m_forget, m_retain), (o_forget, o_retain) = accuracies(method), accuracies(oracle)
    method_probs = method.probs(split)[forget].double()
    reference_probs = torch.stack([r.probs(split)[forget].double() for r in references])
    tv = 0.5 * (method_probs - reference_probs.mean(dim=0)).abs().sum(dim=1).mean()
    classes = labels[forget]
    method_conf = logit_confidence(method_probs, classes).mean()
    reference_conf = torch.stack([logit_confidence(p, classes).mean() for p in reference_probs])
    gap = (method_conf - reference_conf.mean()).abs()
    spread = reference_conf.std(unbiased=True)
    return {"forget_gap": abs(m_forget - o_forget), "utility_gap": abs(m_retain - o_retain), "tv": float(tv),
            "confidence_gap": float(gap / (gap + spread)) if gap + spread > 0 else 0.0}


def objective_value(parts: dict[str, float], objective: str = "privacy") -> float:
    """The objective ``objective`` (``privacy`` or ``utility``) from :func:`objective_parts`."""
    if objective not in PARTS:
        raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    return sum(parts[p] for p in PARTS[objective])
