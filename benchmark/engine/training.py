"""Training the protocol's plain classifiers: the original model, the oracle, references and shadows."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from benchmark.core.epoch_mean import EpochMean
from benchmark.core.recipes import TrainRecipe, make_lightning_optimizers
from benchmark.engine.fitting import DEFAULT_FIT, FitSettings

TRAIN_LOSS = "train_loss"  # the per-epoch loss every classifier fit logs (a group's members as <name>/train_loss)


class ClassifierModule(L.LightningModule):
    """Cross-entropy training of ``model`` with a :class:`TrainRecipe`."""

    def __init__(self, model: nn.Module, recipe: TrainRecipe) -> None:
        super().__init__()
        self.model = model
        self.recipe = recipe
        self.epoch_loss = EpochMean(TRAIN_LOSS)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.epoch_loss.add(self, loss, weight=len(y))
        return loss

    def configure_optimizers(self):
        r = self.recipe
        return make_lightning_optimizers(self.model.parameters(), optimizer=r.optimizer, lr=r.lr,
                                         momentum=r.momentum, weight_decay=r.weight_decay,
                                         scheduler=r.scheduler, epochs=r.epochs)


def fit_classifier(model: nn.Module, loader: DataLoader, recipe: TrainRecipe, *, seed: int,
                   fit: FitSettings = DEFAULT_FIT, description: str = "train",
                   log_as: str | None = None) -> dict[str, Any]:
    """Train ``model`` in place on ``loader``; return metadata (wall time) for the cache. ``log_as``: the fit's
    name in the run's loggers (None logs nothing)."""
    L.seed_everything(seed, workers=True, verbose=False)
    trainer = fit.trainer(recipe.epochs, description=description, log_as=log_as)
    start = time.perf_counter()
    trainer.fit(ClassifierModule(model, recipe), train_dataloaders=loader)
    return {"train_time_s": time.perf_counter() - start, "epochs": recipe.epochs}


def seeded_build(build, seed: int):
    """Wrap a model builder so the initial weights depend only on ``seed``."""

    def _build() -> nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return build()

    return _build
