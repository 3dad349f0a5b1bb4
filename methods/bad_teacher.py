"""Bad Teacher: distil the original model on retain data and a random model on forget data.

Chundawat, Tarun, Mandal, Kankanhalli, "Can Bad Teaching Induce Forgetting? Unlearning in Deep
Networks Using an Incompetent Teacher" (AAAI 2023, arXiv 2205.08096). The student (a copy of the
original model) is trained on a shuffled mix of D_f and a random share of D_r to match, by
KL(teacher || student) at a temperature, the competent teacher (the frozen original model) on
retain samples and the incompetent teacher (a randomly initialised model of the same architecture)
on forget samples.

Hyperparameters (defaults from the reference code, vikram2000b/bad-teaching-unlearning: Adam,
lr 1e-4, no weight decay, 1 epoch; presets tune lr and epochs on V):

- ``temperature`` (1.0): distillation temperature (``KL_temperature``). The KL here is scaled by
  T^2 (:func:`methods.distillation.distillation_kl`); the reference code does not scale it, which is
  the same at its default T = 1.
- ``retain_fraction`` (0.3): share of D_r drawn (once, from the run's seed) to train on.
- ``lr`` (1e-4), ``epochs`` (1), ``optimizer`` ("adam"), ``weight_decay`` (0.0).

The incompetent teacher is re-initialised from the run's seed, so a run is reproducible.
"""

from __future__ import annotations

import torch
from torch.utils.data import ConcatDataset

from datamodules.base import MethodData
from methods.base import frozen_copy
from methods.distillation import TeacherStudentMethod, check_temperature, distillation_kl, random_subset, random_teacher
from methods.search import Integer, LogUniform


class BadTeacher(TeacherStudentMethod):
    name = "bad_teacher"
    uses = frozenset({"retain", "forget"})
    teachers = ("competent", "incompetent")
    # The reference code (Adam, lr 1e-4, 1 epoch, KL temperature 1); presets swept lr 1e-4-0.01 x epochs 1-10 and
    # chose lr 1e-3, 3 epochs.
    search_space = {
        "lr": LogUniform(1e-5, 1e-2, published=1e-4),
        "epochs": Integer(1, 10, published=1),
        "temperature": LogUniform(0.5, 8.0, published=1.0),
    }

    def __init__(self, model, *, temperature: float = 1.0, retain_fraction: float = 0.3, lr: float = 1e-4,
                 epochs: int = 1, optimizer: str = "adam", weight_decay: float = 0.0, **kwargs) -> None:
        check_temperature(temperature, "bad_teacher")
        if not 0.0 < retain_fraction <= 1.0:
            raise ValueError(f"bad_teacher: retain_fraction must be in (0, 1], got {retain_fraction}")
        super().__init__(model, lr=lr, epochs=epochs, optimizer=optimizer, weight_decay=weight_decay, **kwargs)
        self.temperature, self.retain_fraction = temperature, retain_fraction
        self.competent = frozen_copy(model)
        self.incompetent = random_teacher(model, seed=self.hparams.seed)

    def unlearning_data(self, data: MethodData):
        """One shuffled loader over D_f and a ``retain_fraction`` share of D_r (as ``{"mixed": (x, y)}``)."""
        bs = self.hparams.batch_size
        retain = random_subset(data.retain_dataloader().dataset, self.retain_fraction, seed=self.hparams.seed)
        mixed = ConcatDataset([retain, data.forget_dataloader().dataset])
        return data.combine(mixed=data.loader(mixed, batch_size=bs))

    def training_step(self, batch, batch_idx):
        x, y = batch["mixed"]
        # forget samples are exactly those labelled with a forget class: they follow the incompetent teacher
        is_forget = torch.isin(y, torch.tensor(self.forget_classes, device=y.device))
        with torch.no_grad():
            teacher_logits = torch.where(is_forget[:, None], self.incompetent(x), self.competent(x))
        return self.checked(distillation_kl(self.model(x), teacher_logits, self.temperature))
