"""Retrain: train from scratch on the retain data D_r with the original model's recipe.

The gold standard every method is compared to (the method table in README.md). Its row is a retrained model with a
seed of its own, distinct from the oracle and the references, so its gaps to the oracle measure the
seed-to-seed noise floor rather than being zero by construction. Hyperparameters default to the
preset's training recipe (:meth:`recipe_defaults`).
"""

from __future__ import annotations

from typing import Any

from benchmark.core.recipes import TrainRecipe
from datamodules.base import MethodData
from methods.base import UnlearningMethod, reinitialise


class Retrain(UnlearningMethod):
    name = "retrain"
    uses = frozenset({"retain"})
    search_space = {}  # the preset's training recipe itself, shared with the oracle and references: not tuned

    @classmethod
    def recipe_defaults(cls, recipe: TrainRecipe) -> dict[str, Any]:
        return {"lr": recipe.lr, "epochs": recipe.epochs, "optimizer": recipe.optimizer,
                "momentum": recipe.momentum, "weight_decay": recipe.weight_decay,
                "scheduler": recipe.scheduler, "batch_size": recipe.batch_size}

    def prepare(self, data: MethodData) -> None:
        """Forget everything: re-initialise every layer from this run's seed."""
        reinitialise(self.model, self.hparams.seed)

    def loss(self, retain, forget):
        return self.cross_entropy(retain)
