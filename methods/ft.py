"""Fine-tune (FT): continue training the original model with cross-entropy on D_r only.

Warnecke et al., "Machine Unlearning of Features and Labels" (NDSS 2023) and the FT baseline of
Jia et al., "Model Sparsity Can Simplify Machine Unlearning" (NeurIPS 2023, arXiv 2304.04934):
forgetting comes only from catastrophic forgetting of D_f while fitting D_r. Defaults follow
SalUn's class-wise setting (lr 0.01, 10 epochs); presets set their own.
"""

from __future__ import annotations

from methods.base import UnlearningMethod
from methods.search import Integer, LogUniform


class FineTune(UnlearningMethod):
    name = "ft"
    uses = frozenset({"retain"})
    # SalUn's class-wise FT setting (lr 0.01, 10 epochs); presets chose lr 0.01-0.02, epochs 3-10.
    search_space = {
        "lr": LogUniform(1e-3, 1e-1, published=1e-2),
        "epochs": Integer(1, 15, published=10),
    }

    def __init__(self, model, *, lr: float = 0.01, epochs: int = 10, **kwargs) -> None:
        super().__init__(model, lr=lr, epochs=epochs, **kwargs)

    def loss(self, retain, forget):
        return self.cross_entropy(retain)
