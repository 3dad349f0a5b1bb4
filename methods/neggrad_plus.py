"""NegGrad+: fine-tune on D_r while ascending the loss on D_f, with a weight between the two.

Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning" (NeurIPS 2023,
arXiv 2302.09880), where NegGrad+ is introduced as a strengthened NegGrad baseline. Each step
minimises ``beta * CE(D_r batch) - (1 - beta) * CE(D_f batch)``; beta = 1 is plain fine-tuning and
beta = 0 plain gradient ascent (``ga``).

Hyperparameters (defaults from the paper's appendix, small-scale setting: beta 0.95, lr 0.01,
10 epochs; its large-scale setting uses beta 0.9999 and 5 epochs; presets tune beta and lr on V):

- ``beta`` (0.95): weight of the retain loss; the forget loss gets ``1 - beta``.
- ``lr`` (0.01), ``epochs`` (10): SGD with the base class's momentum and weight decay.
"""

from __future__ import annotations

from methods.base import UnlearningMethod
from methods.search import Integer, LogUniform, Uniform


class NegGradPlus(UnlearningMethod):
    name = "neggrad_plus"
    uses = frozenset({"retain", "forget"})
    # The paper's small-scale setting (beta 0.95, lr 0.01, 10 epochs; its large-scale beta 0.9999 lies outside);
    # presets swept beta 0.9-0.999 x lr 0.001-0.02 x epochs 2-10 and chose beta 0.98-0.99.
    search_space = {
        "beta": Uniform(0.9, 0.999, published=0.95),
        "lr": LogUniform(1e-3, 1e-1, published=1e-2),
        "epochs": Integer(1, 15, published=10),
    }

    def __init__(self, model, *, beta: float = 0.95, lr: float = 0.01, epochs: int = 10, **kwargs) -> None:
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"neggrad_plus: beta weighs retain against forget loss and must be in [0, 1], got {beta}")
        super().__init__(model, lr=lr, epochs=epochs, **kwargs)
        self.beta = beta

    def loss(self, retain, forget):
        return self.beta * self.cross_entropy(retain) - (1.0 - self.beta) * self.cross_entropy(forget)
