"""Gradient ascent (GA, NegGrad): maximise the cross-entropy on the forget data D_f.

Thudi et al., "Unrolling SGD: Understanding Factors Influencing Machine Unlearning" (EuroS&P 2022);
Golatkar et al., "Eternal Sunshine of the Spotless Net" (CVPR 2020, NegGrad). It sees no retain data,
so it damages retained accuracy quickly and diverges at large learning rates (the suite records such
runs as ``diverged``). Defaults: lr 1e-4, 5 epochs (small, as in SalUn's GA baseline).
"""

from __future__ import annotations

from methods.base import UnlearningMethod
from methods.search import Integer, LogUniform


class GradientAscent(UnlearningMethod):
    name = "ga"
    uses = frozenset({"forget"})
    # SalUn's GA baseline (lr 1e-4, 5 epochs); presets chose lr 1e-4-1e-3, epochs 2-5.
    search_space = {
        "lr": LogUniform(1e-5, 1e-2, published=1e-4),
        "epochs": Integer(1, 10, published=5),
    }

    def __init__(self, model, *, lr: float = 1e-4, epochs: int = 5, **kwargs) -> None:
        super().__init__(model, lr=lr, epochs=epochs, **kwargs)

    def loss(self, retain, forget):
        return -self.cross_entropy(forget)
