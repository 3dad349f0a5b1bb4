"""l1-sparse: fine-tune on D_r with an L1 penalty on the weights whose weight decays linearly to zero.

Jia, Liu, Ram, Yao, Liu, Liu, Sharma, Liu, "Model Sparsity Can Simplify Machine Unlearning"
(NeurIPS 2023, arXiv 2304.04934), the "l1-sparse MU" method. Each step minimises
``CE(D_r batch) + alpha_t * ||theta||_1``, where ``||theta||_1`` sums the absolute values of every
parameter of the model and ``alpha_t = alpha * (1 - t / epochs)`` falls linearly from ``alpha`` in
the first epoch towards zero in the last (t is the epoch index, as in the reference code), so the
penalty first sparsifies the model and then lets fine-tuning recover accuracy.

Hyperparameters (defaults from the paper and its reference code, OPTML-Group/Unlearn-Sparse, for
class-wise forgetting on CIFAR-10; presets tune lr and alpha on V):

- ``alpha`` (5e-4): initial weight of the L1 penalty.
- ``lr`` (0.01), ``epochs`` (10): SGD with the base class's momentum and weight decay.
"""

from __future__ import annotations

import torch
from torch import Tensor

from methods.base import UnlearningMethod
from methods.search import Integer, LogUniform


class L1Sparse(UnlearningMethod):
    name = "l1"
    uses = frozenset({"retain"})
    # The paper and its reference code (alpha 5e-4, lr 0.01, 10 epochs); presets chose alpha 1e-3-2e-3, lr 0.02-0.05.
    search_space = {
        "alpha": LogUniform(1e-4, 1e-2, published=5e-4),
        "lr": LogUniform(1e-3, 1e-1, published=1e-2),
        "epochs": Integer(1, 15, published=10),
    }

    def __init__(self, model, *, alpha: float = 5e-4, lr: float = 0.01, epochs: int = 10, **kwargs) -> None:
        if alpha < 0:
            raise ValueError(f"l1: the L1 weight alpha must be >= 0, got {alpha}")
        super().__init__(model, lr=lr, epochs=epochs, **kwargs)
        self.alpha = alpha

    def current_alpha(self) -> float:
        """``alpha * (1 - epoch / epochs)``: the L1 weight of the current epoch."""
        epochs = max(int(self.hparams.epochs), 1)
        return self.alpha * (1.0 - self.current_epoch / epochs)

    def l1_norm(self) -> Tensor:
        """Sum of the absolute values of all the model's parameters."""
        return torch.stack([p.abs().sum() for p in self.model.parameters()]).sum()

    def loss(self, retain, forget):
        return self.cross_entropy(retain) + self.current_alpha() * self.l1_norm()
