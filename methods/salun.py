"""SalUn: Random Labels restricted to the weights most salient for the forget loss.

Fan, Liu, Zhang, Wei, Wong, Liu, "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency in Both Image Classification and Generation" (ICLR 2024, arXiv 2310.12508). The saliency of
each weight is the magnitude of the gradient of the forget loss (cross-entropy on D_f) at the
original model, and the mask keeps the ``threshold`` share of weights with the highest saliency,
ranked over the whole model. Random-label unlearning (:class:`~methods.rl.RandomLabels`: D_f
relabelled among the retained classes, trained together with D_r) then updates only the masked
weights.

"Only" is exact here: the weight decay is added to the gradient before the mask is applied (the
optimiser itself runs without weight decay; for SGD and for torch's Adam this is the same L2 term),
so unmasked weights keep their original values. The reference code masks the gradient but leaves
the optimiser's weight decay on every weight. Buffers (batch-norm running statistics) still update in
training mode, as in the reference code.

Hyperparameters (presets tune lr and epochs on V):

- ``threshold`` (0.5): share of weights in the mask, the paper's class-wise setting (top 50%).
- ``lr`` (0.01), ``epochs`` (10): as :class:`~methods.rl.RandomLabels`, SalUn's class-wise setting.
"""

from __future__ import annotations

import torch

from benchmark.core.recipes import make_lightning_optimizers
from datamodules.base import MethodData
from methods.importance import gradient_saliency, top_fraction_mask
from methods.rl import RandomLabels
from methods.search import Integer, LogUniform, Uniform


class SalUn(RandomLabels):
    name = "salun"
    uses = frozenset({"retain", "forget"})
    # The paper's class-wise setting (top 50% of weights, lr 0.01, 10 epochs); presets chose lr 0.01-0.03,
    # epochs 3-5. A threshold of 1 would be plain RL, so the range stops short of it.
    search_space = {
        "threshold": Uniform(0.1, 0.9, published=0.5),
        "lr": LogUniform(1e-3, 1e-1, published=1e-2),
        "epochs": Integer(1, 15, published=10),
    }

    def __init__(self, model, *, threshold: float = 0.5, lr: float = 0.01, epochs: int = 10, **kwargs) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"salun: the mask threshold is a share of the weights in (0, 1], got {threshold}")
        super().__init__(model, lr=lr, epochs=epochs, **kwargs)
        self.threshold = threshold
        self.masks: dict[str, torch.Tensor] = {}

    def prepare(self, data: MethodData) -> None:
        """The saliency mask: the top ``threshold`` share of |grad of CE on D_f| over all weights."""
        loader = data.forget_dataloader(shuffle=False, batch_size=self.hparams.batch_size)
        self.masks = top_fraction_mask(gradient_saliency(self.model, loader), self.threshold)

    def configure_optimizers(self):
        h = self.hparams  # weight decay is applied through the masked gradient instead
        return make_lightning_optimizers(self.trainable_parameters(), optimizer=h.optimizer, lr=h.lr,
                                         momentum=h.momentum, weight_decay=0.0, scheduler=h.scheduler,
                                         epochs=h.epochs)

    def on_train_start(self) -> None:
        super().on_train_start()
        self.masks = {name: mask.to(self.device) for name, mask in self.masks.items()}

    def on_before_optimizer_step(self, optimizer) -> None:
        weight_decay = self.hparams.weight_decay
        for name, p in self.model.named_parameters():
            if p.grad is None:
                continue
            if weight_decay:
                p.grad.add_(p.detach(), alpha=weight_decay)
            mask = self.masks.get(name)
            if mask is not None:
                p.grad.masked_fill_(~mask, 0.0)
