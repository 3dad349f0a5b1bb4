"""The classic accuracy metrics UA, FTA, RA and TA (docs/protocol.md, section 2), as percentages."""

from __future__ import annotations

from torch import Tensor
from torchmetrics.functional.classification import multiclass_accuracy

from attacks.base import MetricCallback
from attacks.metrics import MetricInfo
from attacks.outputs import Outputs


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in percent (micro average: the share of samples predicted right)."""
    if len(labels) == 0:
        return float("nan")
    acc = multiclass_accuracy(logits, labels, num_classes=logits.shape[1], average="micro")
    return 100.0 * float(acc)


def accuracy_metrics(outputs: Outputs) -> dict[str, float]:
    """UA = 100 - acc(D_f), FTA = acc(T_f), RA = acc(D_r), TA = acc(T_r)."""
    acc = {s: accuracy(outputs.logits[s], outputs.labels[s]) for s in ("D_f", "T_f", "D_r", "T_r")}
    return {"UA": 100.0 - acc["D_f"], "FTA": acc["T_f"], "RA": acc["D_r"], "TA": acc["T_r"]}


class Accuracy(MetricCallback):
    """Fills UA, FTA, RA and TA for the method and the oracle at the end of the unlearning fit."""

    metrics = tuple(MetricInfo(key, key, "%", "oracle", meaning, column=True, gap="avg") for key, meaning in (
        ("UA", "100 − accuracy on the forget-class training samples D_f"),
        ("FTA", "accuracy on the forget-class test samples T_f"),
        ("RA", "accuracy on the retained training samples D_r"),
        ("TA", "accuracy on the retained test samples T_r")))

    def compute(self, outputs: Outputs) -> dict[str, float]:
        return accuracy_metrics(outputs)
