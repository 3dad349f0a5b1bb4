"""UAM, Unlearning-Aware Minimization: descend the retain loss as seen from weights perturbed to raise the forget loss.

Kim, Kim, Chae, Yoon, "Unlearning-Aware Minimization" (NeurIPS 2025, OpenReview kAuckbcMvi; no arXiv id;
reference code Harry24k/machine-unlearning-pytorch, ``torchunlearn/optim/minimizer.py``, class ``UAM``). The
paper poses unlearning as ``min_w max_{||eps|| <= rho} L_r(w + eps)`` with the perturbation chosen to maximise
the forget loss, and solves the inner problem to first order, as sharpness-aware minimisation (SAM) does:

1. ``g_f``: the gradient of the forget loss (cross-entropy of a D_f batch, true labels) at ``w``;
2. ``w_hat = w + rho * g_f / ||g_f||`` (one norm over all parameters);
3. ``g_r``: the gradient of the retain loss (cross-entropy of a D_r batch) at ``w_hat``;
4. back at ``w``, the optimiser steps with ``g_r`` (its momentum and weight decay act at ``w``).

The implemented objective is the reference code's image-classification one, which is exactly the four steps
above. Where it had to choose:

- the paper's eq. (15) (its Algorithm 2, for language models) also scales the step by ``[I - gamma P_f]``, a
  correction along the forget gradient; the reference ``UAM`` minimiser takes a ``gamma`` but never applies it
  for classifiers, and it is left out here;
- the reference optionally anneals ``rho`` to 0 with a per-step cosine (``cosine_total_step``); ``rho`` is
  constant here;
- the reference evaluates the forget loss on the forget and retain batches concatenated, keeping the forget
  part (batch norm then normalises over both); so does this module;
- ``w_hat`` is never written into the model: step 3 evaluates the retain loss through
  ``torch.func.functional_call`` at ``w + eps`` with ``eps`` held constant, whose gradient with respect to
  ``w`` is ``g_r`` at ``w_hat``; so Lightning's ordinary backward and step apply it (and U-LiRA's groups of
  in-shadows can share one loop).

Hyperparameters (presets tune rho, lr and epochs on V):

- ``rho`` (1.5, ``DEFAULT_RHO``): the perturbation radius, in weight space. Neither the reference code nor
  the material this suite could read gives the paper's value (the reference README leaves it a variable), so
  it is this suite's choice, not a published one: on digits (forget classes 3, 8 and 0, seed 0, at lr 0.07 x
  15 epochs) rho 0 (plain fine-tuning on D_r) left UA 10, rho 1 UA 28, rho 1.5 UA 99-100 with test accuracy
  kept, rho 2-3 cost 3-7 points of it and rho 20 collapsed the model. The search space spans 0.05-5.
- ``lr`` (0.01), ``epochs`` (5): SGD, momentum 0.9, weight decay 5e-4, the reference README's benchmark
  setting (CIFAR-10 / ResNet-18, every training method 5 epochs at ``SGD(lr=0.01, momentum=0.9,
  weight_decay=5e-4)``). On digits that schedule forgets nothing at any rho tried (UA 0 at rho 0.05-20); the
  digits preset sets lr 0.07 and 15 epochs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from methods.base import UnlearningMethod
from methods.search import Integer, LogUniform

DEFAULT_RHO = 1.5  # this suite's choice on digits (module docstring); the paper's value is not known here


def ascent_perturbation(grads: dict[str, Tensor], rho: float) -> dict[str, Tensor]:
    """``rho * g / (||g|| + 1e-16)`` with one L2 norm over every tensor of ``g`` (the reference's SAM step)."""
    norm = torch.stack([g.norm() for g in grads.values()]).norm() + 1e-16
    return {name: rho * g / norm for name, g in grads.items()}


class UnlearningAwareMinimization(UnlearningMethod):
    name = "uam"
    uses = frozenset({"retain", "forget"})
    # rho: this suite's default (no published value found); lr and epochs: the reference README's benchmark setting.
    search_space = {
        "rho": LogUniform(0.05, 5.0, published=DEFAULT_RHO),
        "lr": LogUniform(1e-3, 2e-1, published=0.01),
        "epochs": Integer(1, 20, published=5),
    }

    def __init__(self, model, *, rho: float = DEFAULT_RHO, lr: float = 0.01, epochs: int = 5, **kwargs) -> None:
        if not rho >= 0:
            raise ValueError(f"uam: the perturbation radius rho must be >= 0, got {rho}")
        super().__init__(model, lr=lr, epochs=epochs, **kwargs)
        self.rho = rho

    def forget_loss(self, forget, retain) -> Tensor:
        """Cross-entropy of the forget batch, computed in one forward pass with the retain batch (as the reference)."""
        (xf, yf), (xr, _) = forget, retain
        logits = self.model(torch.cat([xf, xr]))
        return F.cross_entropy(logits[: len(xf)], yf)

    def perturbation(self, forget, retain) -> dict[str, Tensor]:
        """The detached ascent step on the forget loss, per parameter name (zeros where it has no gradient)."""
        named = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        grads = torch.autograd.grad(self.forget_loss(forget, retain), list(named.values()), allow_unused=True)
        grads = {n: (torch.zeros_like(p) if g is None else g.detach()) for (n, p), g in zip(named.items(), grads)}
        return ascent_perturbation(grads, self.rho)

    def loss(self, retain, forget):
        eps = self.perturbation(forget, retain)
        shifted = {n: p + eps[n] for n, p in self.model.named_parameters() if n in eps}
        x, y = retain
        return F.cross_entropy(functional_call(self.model, shifted, (x,)), y)
