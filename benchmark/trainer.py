"""One place that builds Lightning Trainers, so every fit (original, oracle, bank, unlearning) gets the
same accelerator settings, the same quiet logging and the same progress display."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from rich.progress import Progress, TaskID
from torch import Tensor

from benchmark.distributed import BroadcastWeights

# Lightning's banners ("GPU available: ...", tips) would drown the benchmark's own progress display.
for _name in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")  # frozen teachers are meant to be
warnings.filterwarnings("ignore", message=".*sync_dist=True.*")  # logged losses are never read across ranks


class FitProgress(Callback):
    """A rich progress bar for one fit, shown under the grid's bar and removed when the fit ends."""

    def __init__(self, progress: Progress, description: str) -> None:
        self.progress, self.description = progress, description
        self.task: TaskID | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = trainer.max_epochs * max(int(trainer.num_training_batches), 1)
        self.task = self.progress.add_task(f"  {self.description}", total=total)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.task is not None:
            self.progress.advance(self.task)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


def make_trainer(max_epochs: int, *, callbacks: list[Callback] | None = None,
                 trainer_kwargs: dict[str, Any] | None = None, progress: Progress | None = None,
                 description: str = "fit") -> L.Trainer:
    """A quiet Trainer: no logger, no checkpoints, no model summary, our own progress bar.

    Args:
        max_epochs: epochs of this fit (0 runs no step but still fires the fit-end callbacks).
        callbacks: extra callbacks (metrics, attacks).
        trainer_kwargs: user's Trainer arguments (accelerator, devices, strategy, precision, ...).
        progress: a shared rich Progress to show this fit in.
        description: the label of this fit's bar.
    """
    # first, so the metric callbacks after it score rank 0's weights on every rank
    callbacks = [BroadcastWeights(), *(callbacks or [])]
    if progress is not None:
        callbacks.append(FitProgress(progress, description))
    kwargs = {"accelerator": "cpu", "devices": 1, "deterministic": False}
    kwargs.update(trainer_kwargs or {})
    return L.Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     callbacks=callbacks, **kwargs)


class EpochMean:
    """A fit's step losses, logged once per epoch as their mean.

    ``LightningModule.log`` costs Lightning 2 to 4 ms per call on a CPU (its result collection is moved to the
    device and updated each time): as much as a whole training step of the small presets' models. Summing
    the detached losses and logging their mean at the epoch's last batch keeps the epoch value at a fraction
    of the cost (nothing reads the per-step values: the Trainer has no logger).

    Args:
        name: the logged metric's name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.epoch = -1
        self.total: Tensor | None = None
        self.weight = 0

    def add(self, module: L.LightningModule, loss: Tensor, weight: int = 1) -> None:
        """Count one step's ``loss`` (with ``weight``, e.g. its batch size); log the mean on the last batch."""
        if module._trainer is None:  # a step called by hand (tests, notebooks): there is no epoch to log into
            return
        if module.current_epoch != self.epoch:  # an epoch whose last step logged nothing starts afresh
            self.epoch, self.total, self.weight = module.current_epoch, None, 0
        value = loss.detach() * weight
        self.total = value if self.total is None else self.total + value
        self.weight += weight
        if module.trainer.is_last_batch:
            module.log(self.name, self.total / self.weight, on_step=False, on_epoch=True, batch_size=1)
