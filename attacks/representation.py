"""The representation probe (docs/protocol.md, section 4c): is the forgotten class still linearly decodable from
the model's penultimate features?

A multinomial logistic regression, L2-regularised with :data:`PROBE_C`, is fitted on the frozen penultimate
features (``model.features``) of the validation split V, every class included, and scored on the forget-class
test samples T_f. A model that only re-routed its head keeps features in which the class is as separable as
before; a retrained model's features were never shaped by the class, and the oracle under the same probe says
how decodable the class is from such features.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks.errors import ScoreUndefined
from attacks.metrics import MetricInfo
from attacks.probes import ModelProbe, ProbeData

PROBE_C = 1.0  # inverse L2 strength, scikit-learn's convention (its default), on standardised features
PROBE_MAX_ITER = 500  # L-BFGS iterations: far more than digits' features need to converge
# on the largest entry of the per-sample gradient: scikit-learn's predictions, its weights to about 1e-4 (tests),
# in a tenth of the time 1e-9 takes
PROBE_TOLERANCE = 1e-6


@torch.no_grad()
def penultimate_features(model: nn.Module, images: Tensor, batch_size: int = 1024) -> Tensor:
    """``model.features`` of ``images`` in eval mode, batched, as float64 on the CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts = [model.features(images[i:i + batch_size].to(device)).double().cpu()
             for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(parts)


def standardiser(features: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature mean and standard deviation (population) of ``features``; a constant feature keeps scale 1, so
    C means the same for every model whatever its features' scale."""
    mean, std = features.mean(dim=0), features.std(dim=0, unbiased=False)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def fit_logistic_regression(x: Tensor, y: Tensor, num_classes: int, *, C: float = PROBE_C,
                            max_iter: int = PROBE_MAX_ITER,
                            tolerance: float = PROBE_TOLERANCE) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression by L-BFGS, in float64 from zero weights (deterministic).

    Minimises sum_i CE(W x_i + b, y_i) + ||W||^2 / (2 C), the intercept b unpenalised: scikit-learn's
    ``LogisticRegression(C=C)`` objective (divided by n here, which moves no minimum). Returns (W, b) with W of
    shape (num_classes, features); b is centred (it is defined up to a constant shift).

    Args:
        x: (n, d) features.
        y: (n,) labels in 0..num_classes-1.
        num_classes: K.
        C: inverse regularisation strength.
        max_iter: L-BFGS iterations at most.
        tolerance: stop when the gradient's largest entry falls below it.
    """
    x, y = x.double(), y.long()
    n = len(y)
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=tolerance,
                                  tolerance_change=1e-15, history_size=20, line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y, reduction="sum") / n + (weight ** 2).sum() / (2 * C * n)
        loss.backward()
        return loss

    optimiser.step(objective)
    with torch.no_grad():
        return weight.detach().clone(), (bias - bias.mean()).detach().clone()


def logistic_predict(weight: Tensor, bias: Tensor, x: Tensor) -> Tensor:
    """The predicted class of each row of ``x``."""
    return (x.double() @ weight.T + bias).argmax(dim=1)


def linear_probe_accuracy(train: tuple[Tensor, Tensor], tests: dict[str, tuple[Tensor, Tensor]], num_classes: int,
                          C: float = PROBE_C) -> dict[str, float]:
    """Fit the probe on ``train``'s (features, labels), standardised by its own statistics, and return its
    accuracy (%) on each of ``tests`` (features standardised the same way)."""
    mean, std = standardiser(train[0])
    weight, bias = fit_logistic_regression((train[0] - mean) / std, train[1], num_classes, C=C)
    return {name: 100.0 * float((logistic_predict(weight, bias, (x - mean) / std) == y.long()).double().mean())
            for name, (x, y) in tests.items()}


class RepresentationProbe(ModelProbe):
    """``repr_FTA``: the linear probe's accuracy on T_f, for the method, the oracle and (the null) each
    reference; its accuracy on T_r goes to the row's diagnostics (``representation``), which says the probe
    itself works."""

    probe_name = "representation"
    settings = {"C": PROBE_C, "max_iter": PROBE_MAX_ITER, "tolerance": PROBE_TOLERANCE, "train": "V", "version": 1}

    metrics = (
        MetricInfo("repr_FTA", "probe FTA", "%", "oracle",
                   f"a multinomial logistic regression (L2, C = {PROBE_C:g}) on the model's frozen, standardised "
                   "penultimate features of V, all classes, scored on T_f: how linearly decodable the forget class "
                   "still is (best: the null mean, what retrained models score)", column=True,
                   reference="repr_FTA_null_mean", table="robustness"),
        MetricInfo("repr_FTA_null_mean", "probe FTA null", "%", "none",
                   "mean of probe FTA over the M references (what retrained models score)", table="robustness"),
        MetricInfo("repr_FTA_null_sd", "probe FTA null sd", "%", "none",
                   "standard deviation of probe FTA over the M references", table="robustness"),
    )

    def probe(self, model: nn.Module, data: ProbeData, seed: int) -> dict[str, Any]:
        if not callable(getattr(model, "features", None)):
            raise ScoreUndefined(f"the representation probe reads model.features, which {type(model).__name__} lacks")
        splits = {name: data.split(name) for name in ("V", "T_f", "T_r")}
        if not all(len(y) for _, y in splits.values()):
            raise ScoreUndefined("the representation probe needs samples in V, T_f and T_r")
        features = {name: (penultimate_features(model, x), y) for name, (x, y) in splits.items()}
        accuracy = linear_probe_accuracy(features["V"], {"T_f": features["T_f"], "T_r": features["T_r"]},
                                         data.num_classes)
        return {"scores": {"repr_FTA": accuracy["T_f"]}, "details": {"probe_TA": accuracy["T_r"]}}
