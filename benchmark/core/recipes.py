"""Optimisers and learning-rate schedules, shared by the classifier trainer and every method."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from benchmark.core.errors import ConfigError

OPTIMIZERS = ("sgd", "adam")
SCHEDULERS = ("constant", "cosine")


@dataclass(frozen=True)
class TrainRecipe:
    """How the original model, the oracle, the references and the shadows are trained.

    The paper-scale recipe (README.md, Presets) is SGD lr 0.1, momentum 0.9, weight decay 5e-4,
    batch 128, 200 epochs; the offline presets use shorter ones that reach 95%+ test accuracy.
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 200
    batch_size: int = 128
    scheduler: str = "cosine"

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        if self.epochs < 0 or self.lr < 0 or self.batch_size < 1:
            raise ConfigError(f"training recipe needs epochs >= 0, lr >= 0 and batch_size >= 1, got {self}")

    def to_dict(self) -> dict:
        return asdict(self)


def check_choice(what: str, value: str, choices: Iterable[str]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def make_optimizer(params: Iterable[nn.Parameter], *, optimizer: str, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    check_choice("optimizer", optimizer, OPTIMIZERS)
    params = [p for p in params if p.requires_grad]
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def make_lightning_optimizers(params: Iterable[nn.Parameter], *, optimizer: str, lr: float,
                              momentum: float, weight_decay: float, scheduler: str, epochs: int):
    """What ``configure_optimizers`` returns: the optimiser and, for ``cosine``, a per-epoch schedule."""
    opt = make_optimizer(params, optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay)
    check_choice("scheduler", scheduler, SCHEDULERS)
    if scheduler == "constant" or epochs <= 1:
        return opt
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
