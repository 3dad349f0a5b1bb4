"""SFR-on: saliency-masked, adaptively weighted gradient ascent on D_f interleaved with fine-tuning on D_r.

Huang, Cheng, Zheng, Wang, He, Li, Huang, "Unified Gradient-based Machine Unlearning with Remain Geometry
Enhancement" (Saliency Forgetting in the Remain-preserving manifold online, NeurIPS 2024, arXiv 2409.19732;
the authors' code: K1nght/Unified-Unlearning-w-Remain-Geometry, ``Classification/unlearn/sfron.py``).

The paper derives the steepest descent towards the retrained model as three parts: weighted gradient ascent on
the forget data, gradient descent on the remaining data, and a weight saliency matrix. It then constrains the
update to the manifold of the remaining data's output geometry, which brings in the remaining loss's Hessian;
rather than computing that Hessian, it approximates the Hessian-modulated direction implicitly with a fast-slow
update: a fast forgetting step is followed by slow retaining steps on D_r, which pull the weights back along
the remaining loss's curvature. As in the authors' code, one step of the schedule is

- every ``forget_freq``-th step first: a *fast* step on a D_f batch, minimising ``-alpha_t * sum_i w_i CE_i``
  with adaptive weights ``w_i proportional to CE_i ** -lambd`` (normalised to sum 1, computed without gradient:
  samples already forgotten weigh less), its gradient masked to the salient weights, clipped to norm
  ``max_norm``, then an optimiser step; ``alpha_t = forget_alpha * (1 + cos(pi t / iterations)) / 2``;
- then, every step: a *slow* step on a D_r batch, minimising its cross-entropy (no mask).

The saliency mask is forget-remain balanced: a weight is salient when its diagonal Fisher importance on D_f
is at least ``threshold`` times its importance on D_r (:func:`methods.importance.fisher_ratio_mask`; both
Fishers are :func:`methods.importance.fisher_diagonal`, the mean over batches of the squared batch gradient,
as the code computes them). Both kinds of step share one SGD optimiser whose learning rate follows a cosine
from ``lr`` to 0 over the ``iterations`` steps. The authors' code also keeps an exponential moving average
of the weights with ``ema_beta = 1``, which leaves the weights as they are; it is not reproduced.

Where this had to choose: the whole schedule of ``iterations`` steps is one Lightning epoch (``epochs`` must be
1; the D_r and D_f loaders restart, reshuffled, whenever they run out); the Fishers are computed on shuffled
loaders of the method's own batch size, with the model in eval mode; the classification code the authors
publish is for random-sample forgetting (CIFAR-10, 10% of the data), so its defaults stand in for class-wise
forgetting, which the paper evaluates in image generation only.

Hyperparameters (defaults: the authors' CIFAR-10 setting in ``Classification/unlearn/sfron.py``):

- ``lr`` (0.01), SGD ``momentum`` (0.9), ``weight_decay`` (5e-4), cosine over ``iterations`` (1500).
- ``forget_freq`` (5): one fast step every five steps.
- ``forget_alpha`` (25): the forget loss's weight at step 0, decayed by the same cosine.
- ``max_norm`` (7): gradient-norm clip of the fast step.
- ``lambd`` (0.5): the adaptive weights' exponent (lambda in the paper).
- ``threshold`` (1): the saliency ratio (gamma in the paper).
- batch size: the preset's ``unlearn_batch_size`` (the authors' script: 128).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules.base import MethodData
from methods.base import UnlearningMethod
from methods.importance import fisher_diagonal, fisher_ratio_mask
from methods.search import Integer, LogUniform


def adaptive_forget_loss(logits: Tensor, labels: Tensor, lambd: float) -> Tensor:
    """``sum_i w_i CE_i`` with ``w_i = CE_i ** -lambd / sum_j CE_j ** -lambd`` (weights carry no gradient)."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    coef = 1.0 / (ce.detach().pow(lambd) + 1e-15)
    return (coef / coef.sum() * ce).sum()


def cosine_factor(step: int, total: int) -> float:
    """``(1 + cos(pi * step / total)) / 2``: 1 at step 0, 0 at ``total`` (CosineAnnealingLR with eta_min 0)."""
    return (1.0 + math.cos(math.pi * step / total)) / 2.0


def _cycle(loader: DataLoader) -> Iterator:
    while True:
        yield from loader


class FastSlowSchedule:
    """``iterations`` steps; each has a D_r batch, and every ``forget_freq``-th (from step 0) a D_f batch too."""

    def __init__(self, retain: DataLoader, forget: DataLoader, iterations: int, forget_freq: int) -> None:
        self.retain, self.forget, self.iterations, self.forget_freq = retain, forget, iterations, forget_freq

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self) -> Iterator[dict]:
        retain, forget = _cycle(self.retain), _cycle(self.forget)
        for step in range(self.iterations):
            batch = {"retain": next(retain)}
            if step % self.forget_freq == 0:
                batch["forget"] = next(forget)
            yield batch


class SFRon(UnlearningMethod):
    name = "sfron"
    uses = frozenset({"retain", "forget"})
    # The authors' CIFAR-10 setting (lr 0.01, 1500 iterations, forget_alpha 25, saliency ratio 1).
    search_space = {
        "lr": LogUniform(1e-3, 1e-1, published=1e-2),
        "iterations": Integer(100, 3000, published=1500),
        "forget_alpha": LogUniform(1.0, 100.0, published=25.0),
        "threshold": LogUniform(0.1, 10.0, published=1.0),
    }

    def __init__(self, model, *, iterations: int = 1500, forget_freq: int = 5, forget_alpha: float = 25.0,
                 max_norm: float = 7.0, lambd: float = 0.5, threshold: float = 1.0, lr: float = 0.01,
                 epochs: int = 1, momentum: float = 0.9, weight_decay: float = 5e-4, optimizer: str = "sgd",
                 scheduler: str = "constant", **kwargs) -> None:
        if iterations < 1 or forget_freq < 1:
            raise ValueError(f"sfron: iterations and forget_freq must be >= 1, got {iterations}, {forget_freq}")
        if forget_alpha < 0 or lambd < 0:
            raise ValueError(f"sfron: forget_alpha and lambd must be >= 0, got {forget_alpha}, {lambd}")
        if not max_norm > 0 or not threshold > 0:
            raise ValueError(f"sfron: max_norm and threshold must be > 0, got {max_norm}, {threshold}")
        if epochs not in (0, 1):
            raise ValueError(f"sfron runs its whole schedule of `iterations` steps as one epoch: epochs must be 1 "
                             f"(0: no unlearning), got {epochs}; set iterations instead")
        if scheduler != "constant":
            raise ValueError(f"sfron sets its cosine learning rate per step: scheduler must be 'constant', "
                             f"got {scheduler!r}")
        super().__init__(model, lr=lr, epochs=epochs, momentum=momentum, weight_decay=weight_decay,
                         optimizer=optimizer, scheduler=scheduler, **kwargs)
        self.automatic_optimization = False  # two optimiser steps per schedule step, the first masked and clipped
        self.masks: dict[str, Tensor] = {}

    def prepare(self, data: MethodData) -> None:
        """The forget-remain balanced saliency mask at the original model."""
        bs = self.hparams.batch_size
        forget = fisher_diagonal(self.model, data.forget_dataloader(batch_size=bs))
        remain = fisher_diagonal(self.model, data.retain_dataloader(batch_size=bs))
        self.masks = fisher_ratio_mask(forget, remain, self.hparams.threshold)

    def unlearning_data(self, data: MethodData) -> FastSlowSchedule:
        bs = self.hparams.batch_size
        return FastSlowSchedule(data.retain_dataloader(batch_size=bs), data.forget_dataloader(batch_size=bs),
                                self.hparams.iterations, self.hparams.forget_freq)

    def on_train_start(self) -> None:
        super().on_train_start()
        self.masks = {name: mask.to(self.device) for name, mask in self.masks.items()}

    def training_step(self, batch, batch_idx):
        h = self.hparams
        optimiser = self.optimizers()
        factor = cosine_factor(batch_idx, h.iterations)
        for group in optimiser.param_groups:
            group["lr"] = h.lr * factor
        if "forget" in batch:  # the fast step
            x, y = batch["forget"]
            loss = self.checked(-h.forget_alpha * factor * adaptive_forget_loss(self.model(x), y, h.lambd))
            if loss is None:
                return None
            optimiser.zero_grad()
            self.manual_backward(loss)
            self.mask_gradients()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=h.max_norm)
            optimiser.step()
        x, y = batch["retain"]  # the slow step
        loss = self.checked(F.cross_entropy(self.model(x), y))
        if loss is not None:
            optimiser.zero_grad()
            self.manual_backward(loss)
            optimiser.step()
        return loss

    def mask_gradients(self) -> None:
        """Zero the gradient of every weight outside the saliency mask."""
        for name, p in self.model.named_parameters():
            mask = self.masks.get(name)
            if p.grad is not None and mask is not None:
                p.grad.mul_(mask)
