"""SCRUB: a student that moves away from the original model on D_f and stays close to it on D_r.

Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning" (NeurIPS 2023,
arXiv 2302.09880). The teacher is the frozen original model and the student starts as a copy of it.
Each epoch first runs (in the first ``msteps`` epochs only) a pass of max-steps over D_f that
maximise the distillation divergence KL(teacher || student), then a pass of min-steps over D_r that
minimise ``gamma * CE + alpha * KL(teacher || student)``; both use the same optimiser, stepped
manually so that the D_f batches of later epochs take no step.

Hyperparameters (defaults from the reference code, meghdadk/SCRUB ``large_scale_unlearning.ipynb``,
the CIFAR-10 setting: SGD, lr 5e-4, momentum 0.9, weight decay 5e-4; presets tune lr on V):

- ``msteps`` (2): number of epochs, counted from the first, that include the max-steps pass over D_f.
- ``gamma`` (0.99): weight of the cross-entropy on D_r in the min-steps.
- ``alpha`` (0.001): weight of the KL divergence on D_r in the min-steps.
- ``temperature`` (4.0): distillation temperature (``kd_T``); the KL is scaled by T^2
  (:func:`methods.distillation.distillation_kl`).
- ``lr`` (5e-4), ``epochs`` (3): SGD with the base class's momentum and weight decay.
"""

from __future__ import annotations

import torch.nn.functional as F

from datamodules.base import MethodData
from methods.base import frozen_copy
from methods.distillation import PhaseLoader, TeacherStudentMethod, check_temperature, distillation_kl
from methods.search import Integer, LogUniform


class SCRUB(TeacherStudentMethod):
    name = "scrub"
    uses = frozenset({"retain", "forget"})
    teachers = ("teacher",)
    # The reference code's CIFAR-10 setting (lr 5e-4, 3 epochs, msteps 2); presets swept lr 1e-3-0.05 x epochs 3/5
    # x msteps 1-3 and chose lr 5e-3-0.01. msteps above epochs acts as msteps = epochs.
    search_space = {
        "lr": LogUniform(1e-4, 1e-1, published=5e-4),
        "epochs": Integer(1, 10, published=3),
        "msteps": Integer(1, 5, published=2),
    }

    def __init__(self, model, *, msteps: int = 2, gamma: float = 0.99, alpha: float = 0.001,
                 temperature: float = 4.0, lr: float = 5e-4, epochs: int = 3, **kwargs) -> None:
        if msteps < 0:
            raise ValueError(f"scrub: msteps (epochs with max-steps) must be >= 0, got {msteps}")
        if gamma < 0 or alpha < 0:
            raise ValueError(f"scrub: the loss weights gamma and alpha must be >= 0, got gamma={gamma}, alpha={alpha}")
        check_temperature(temperature, "scrub")
        super().__init__(model, lr=lr, epochs=epochs, **kwargs)
        self.msteps, self.gamma, self.alpha, self.temperature = msteps, gamma, alpha, temperature
        self.teacher = frozen_copy(model)
        self.automatic_optimization = False

    def unlearning_data(self, data: MethodData) -> PhaseLoader:
        """Each epoch: a pass over D_f (the max-steps), then a pass over D_r (the min-steps)."""
        bs = self.hparams.batch_size
        return PhaseLoader([("forget", data.forget_dataloader(batch_size=bs)),
                            ("retain", data.retain_dataloader(batch_size=bs))])

    def training_step(self, batch, batch_idx):
        """One max-step (a D_f batch, first ``msteps`` epochs only) or min-step (a D_r batch).

        Optimisation is manual so that the D_f batches of later epochs take no step at all (an
        automatic step on a zero loss would still apply momentum and weight decay).
        """
        if "forget" in batch:
            if self.current_epoch >= self.msteps:
                return None
            x, _ = batch["forget"]
            loss = -distillation_kl(self.model(x), self.teacher(x), self.temperature)
        else:
            x, y = batch["retain"]
            logits = self.model(x)
            loss = self.gamma * F.cross_entropy(logits, y) + self.alpha * distillation_kl(
                logits, self.teacher(x), self.temperature)
        loss = self.checked(loss)
        if loss is not None:
            optimiser = self.optimizers()
            optimiser.zero_grad()
            self.manual_backward(loss)
            optimiser.step()
        return loss

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None:  # a per-epoch schedule (``scheduler="cosine"``): manual optimisation steps it
            scheduler.step()
