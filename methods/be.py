"""Boundary Expanding (BE): add a shadow output class, train D_f into it, then prune it.

Chen, Gao, Liu, Peng, Wang, "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the
Decision Boundary" (CVPR 2023, arXiv 2303.11570). The head is widened by one "shadow" output neuron
and the whole widened network is fine-tuned on the forget samples alone with the shadow class as
their label, which pulls their features into a region that belongs to no real class. Pruning the
shadow neuron afterwards leaves the forget samples spread over the remaining classes.

The shadow neuron lives beside the model (``self.shadow``, a ``Linear(feature_dim, 1)`` on
``model.features``), so the model keeps its shape throughout; it is created in :meth:`prepare`
(Xavier-normal weights and zero bias, as in the reference code, from the run's seed) and removed when
training ends, which is the pruning.

Hyperparameters (presets tune lr and epochs on V):

- ``lr`` (1e-5), ``epochs`` (10): SGD with momentum 0.9, as in the paper's CIFAR-10 setting and its
  reference code (which uses no weight decay, hence ``weight_decay`` 0 here).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from datamodules.base import MethodData
from methods.base import UnlearningMethod
from methods.search import Integer, LogUniform


class BoundaryExpanding(UnlearningMethod):
    name = "be"
    uses = frozenset({"forget"})
    # The paper's CIFAR-10 setting (lr 1e-5, 10 epochs); the presets' sweeps (lr 1e-4-0.1) chose 1e-4-1e-3.
    search_space = {
        "lr": LogUniform(1e-5, 1e-2, published=1e-5),
        "epochs": Integer(1, 15, published=10),
    }

    def __init__(self, model, *, lr: float = 1e-5, epochs: int = 10, weight_decay: float = 0.0, **kwargs) -> None:
        super().__init__(model, lr=lr, epochs=epochs, weight_decay=weight_decay, **kwargs)
        self.shadow: nn.Linear | None = None

    def prepare(self, data: MethodData) -> None:
        """Widen the head by one shadow neuron (kept beside the model until training ends)."""
        head = self.model.head
        shadow = nn.Linear(head.in_features, 1).to(device=head.weight.device, dtype=head.weight.dtype)
        generator = torch.Generator().manual_seed(self.hparams.seed)
        with torch.no_grad():
            # Xavier-normal as the row of a widened (K + 1) x d head, as the reference code initialises it
            std = (2.0 / (head.in_features + head.out_features + 1)) ** 0.5
            shadow.weight.copy_(torch.randn(shadow.weight.shape, generator=generator) * std)
            shadow.bias.zero_()
        self.shadow = shadow

    def widened_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over the K real classes and the shadow class (index K)."""
        if self.shadow is None:
            raise RuntimeError("be: the shadow neuron exists only between prepare() and the end of training")
        features = self.model.features(x)
        return torch.cat([self.model.head(features), self.shadow(features)], dim=1)

    def loss(self, retain, forget):
        x, _ = forget
        shadow_class = torch.full((len(x),), self.num_classes, dtype=torch.long, device=x.device)
        return F.cross_entropy(self.widened_logits(x), shadow_class)

    def trainable_parameters(self):
        extra = self.shadow.parameters() if self.shadow is not None else ()
        return itertools.chain(self.model.parameters(), extra)

    def on_train_end(self) -> None:
        super().on_train_end()
        self.prune()

    def prune(self) -> None:
        """Drop the shadow neuron: the model is left with its K real outputs."""
        if self.shadow is not None:
            del self.shadow
            self.shadow = None
