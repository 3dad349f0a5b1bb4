"""UNSIR: learn error-maximising noise for the forget classes, impair the model with it, then repair.

Tarun, Chundawat, Mandal, Kankanhalli, "Fast Yet Effective Machine Unlearning" (IEEE TNNLS 2023,
arXiv 2111.08947). For each forget class c a batch of noise images N_c is optimised, with the model
frozen, to maximise the model's cross-entropy for label c under an L2 penalty on the noise:
``min_N -CE(f(N), c) + lambda * mean_i ||N_i||^2``. The impair step then trains the model for one
pass, at a high learning rate, on a shuffled mix of the (N_c, c) pairs and a class-balanced subset
of D_r; the repair step trains one pass on the D_r subset alone, at a lower learning rate.

UNSIR never reads D_f (the paper's point: only the forget classes' labels are needed), so it
declares ``uses = {"retain"}``.

Hyperparameters (defaults from the reference code, vikram2000b/Fast-Machine-Unlearning, CIFAR-10
with ResNet-18; presets tune lr and repair_lr on V):

- ``noise_size`` (256): noise images per forget class (one reference batch).
- ``noise_steps`` (40): Adam steps on the noise (reference: 5 epochs x 8 steps).
- ``noise_lr`` (0.1): Adam learning rate of the noise.
- ``noise_reg`` (0.1): weight lambda of the mean squared L2 norm of the noise images.
- ``noise_copies`` (20): how many times each noise batch appears in the impair data (the reference
  repeats it 20 times next to the retain subset).
- ``retain_per_class`` (1000): samples per retained class in the D_r subset (fewer where a class has
  fewer).
- ``lr`` (0.02): Adam learning rate of the impair step; ``repair_lr`` (0.01): of the repair step.
  Each step starts with a fresh Adam state, as the reference builds a new optimiser for each.
- ``impair_epochs`` (1), ``repair_epochs`` (1): passes of each step in one round.
- ``epochs`` (1): rounds of impair-then-repair; the paper does one. One round is one Lightning
  epoch (``impair_epochs`` passes over the impair data, then ``repair_epochs`` over the subset).
- ``optimizer`` ("adam"), ``weight_decay`` (0.0); ``scheduler`` must stay "constant" because the
  learning rate is set per step.

Two choices where the reference code is ambiguous: the noise is labelled with its own forget class
(the reference notebook labels every noise image 0, which is the forget class in its single-class
example), and the model is in eval mode while the noise is learned, so BatchNorm statistics are not
updated by noise before the impair step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import ConcatDataset, TensorDataset

from datamodules.base import MethodData
from methods.base import UnlearningMethod
from methods.distillation import PhaseLoader, class_balanced_subset
from methods.search import Integer, LogUniform


class UNSIR(UnlearningMethod):
    name = "unsir"
    uses = frozenset({"retain"})
    groupable = False  # each phase resets the Trainer's optimiser, which a group of in-shadows would share
    # The reference code, CIFAR-10 / ResNet-18 (Adam: impair lr 0.02, repair lr 0.01, one repair pass); presets
    # swept lr 0.005-0.02 x repair_lr 0.005/0.01 x repair_epochs 1-3 and chose repair_epochs 2-3.
    search_space = {
        "lr": LogUniform(1e-3, 1e-1, published=0.02),
        "repair_lr": LogUniform(1e-4, 3e-2, published=0.01),
        "repair_epochs": Integer(1, 5, published=1),
    }

    def __init__(self, model, *, noise_size: int = 256, noise_steps: int = 40, noise_lr: float = 0.1,
                 noise_reg: float = 0.1, noise_copies: int = 20, retain_per_class: int = 1000,
                 lr: float = 0.02, repair_lr: float = 0.01, impair_epochs: int = 1, repair_epochs: int = 1,
                 epochs: int = 1, optimizer: str = "adam", weight_decay: float = 0.0,
                 scheduler: str = "constant", **kwargs) -> None:
        if min(noise_size, noise_copies, retain_per_class) < 1:
            raise ValueError("unsir: noise_size, noise_copies and retain_per_class must be >= 1, got "
                             f"{noise_size}, {noise_copies}, {retain_per_class}")
        if noise_steps < 0 or noise_lr < 0 or noise_reg < 0 or repair_lr < 0:
            raise ValueError("unsir: noise_steps, noise_lr, noise_reg and repair_lr must be >= 0, got "
                             f"{noise_steps}, {noise_lr}, {noise_reg}, {repair_lr}")
        if impair_epochs < 0 or repair_epochs < 0 or impair_epochs + repair_epochs == 0:
            raise ValueError("unsir: impair_epochs and repair_epochs must be >= 0 and not both 0, got "
                             f"{impair_epochs}, {repair_epochs}")
        if scheduler != "constant":
            raise ValueError(f"unsir sets its learning rate per step (lr, repair_lr): scheduler must be "
                             f"'constant', got {scheduler!r}")
        super().__init__(model, lr=lr, epochs=epochs, optimizer=optimizer, weight_decay=weight_decay,
                         scheduler=scheduler, **kwargs)
        self.noise: dict[int, Tensor] = {}
        self._phase: str | None = None

    def prepare(self, data: MethodData) -> None:
        """Learn one batch of error-maximising noise per forget class, the model frozen and in eval mode."""
        h = self.hparams
        shape = data.retain_dataloader(shuffle=False).dataset[0][0].shape
        device = next(self.model.parameters()).device
        generator = torch.Generator().manual_seed(h.seed)
        was_training = self.model.training
        self.model.eval()
        for c in self.forget_classes:
            noise = torch.randn((h.noise_size, *shape), generator=generator).to(device).requires_grad_(True)
            optimiser = torch.optim.Adam([noise], lr=h.noise_lr)
            target = torch.full((h.noise_size,), c, device=device)
            for _ in range(h.noise_steps):
                loss = self.noise_loss(noise, target)
                (noise.grad,) = torch.autograd.grad(loss, [noise])  # gradients reach the noise only
                optimiser.step()
            self.noise[c] = noise.detach().cpu()
        self.model.train(was_training)

    def noise_loss(self, noise: Tensor, target: Tensor) -> Tensor:
        """``-CE(f(noise), c) + noise_reg * mean squared L2 norm``: what the noise minimises."""
        norms = noise.pow(2).flatten(1).sum(dim=1)
        return -F.cross_entropy(self.model(noise), target) + self.hparams.noise_reg * norms.mean()

    def unlearning_data(self, data: MethodData) -> PhaseLoader:
        if not self.noise:
            raise RuntimeError("unsir: prepare() must learn the noise before the unlearning data is built")
        h = self.hparams
        retain = class_balanced_subset(data.retain_dataloader().dataset, h.retain_per_class, seed=h.seed)
        noise = [TensorDataset(n, torch.full((len(n),), c)) for c, n in self.noise.items()]
        impair = ConcatDataset([retain] + noise * h.noise_copies)
        phases = [("impair", data.loader(impair, batch_size=h.batch_size))] * h.impair_epochs
        phases += [("repair", data.loader(retain, batch_size=h.batch_size, stream=4))] * h.repair_epochs
        return PhaseLoader(phases)

    def training_step(self, batch, batch_idx):
        (phase, (x, y)), = batch.items()
        if phase != self._phase:  # a new step starts: its own learning rate and a fresh optimiser state
            self._phase = phase
            optimiser = self.trainer.optimizers[0]
            optimiser.state.clear()
            for group in optimiser.param_groups:
                group["lr"] = self.hparams.lr if phase == "impair" else self.hparams.repair_lr
        return self.checked(F.cross_entropy(self.model(x), y))
