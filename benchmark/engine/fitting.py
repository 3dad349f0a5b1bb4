"""What every fit of a run shares, in one object: :class:`FitSettings` builds each Lightning Trainer (the same
accelerator settings and progress display for the original, the oracle, the bank and every unlearning fit)
and marks the engine's named phases (bank training, unlearning, shadow unlearning) for whoever times them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from rich.progress import Progress, TaskID
from torch.utils.data import DataLoader, TensorDataset

from benchmark.core.distributed import BroadcastWeights, NothingModule, check_strategy, distributed
from benchmark.core.errors import ConfigError
from benchmark.core.quiet import quiet_lightning
from benchmark.engine.loggers import RunLoggers
from benchmark.engine.phases import PhaseTimer

STACKING = ("grouped", "vmap", "auto")


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


@dataclass(frozen=True)
class FitSettings:
    """Everything a fit needs beyond its model and data, passed as one object through the engine.

    Args:
        trainer_kwargs: the user's Lightning Trainer arguments (accelerator, devices, strategy, precision, ...).
        progress: a shared rich Progress that shows each fit as a bar under the grid's; None shows nothing.
        phases: a timer of the engine's named phases (``bench perf`` passes one); None times nothing.
        stacking: how a bank's groups train: ``grouped`` (exact), ``vmap`` or ``auto`` (the faster of the two,
            measured per model and device; :mod:`benchmark.engine.stacked`).
        loggers: the Lightning loggers every named fit logs to (:mod:`benchmark.engine.loggers`); None (the
            default) builds every Trainer with ``logger=False``, as if logging did not exist.
    """

    trainer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    progress: Progress | None = None
    phases: PhaseTimer | None = None
    stacking: str = "grouped"
    loggers: RunLoggers | None = None

    def __post_init__(self) -> None:
        if self.stacking not in STACKING:
            raise ConfigError(f"unknown stacking {self.stacking!r}; known: {', '.join(STACKING)}")

    def with_progress(self, progress: Progress | None) -> FitSettings:
        return dataclasses.replace(self, progress=progress)

    def logging_under(self, directory: str | Path, title: str) -> FitSettings:
        """These settings with their loggers writing under ``directory/logs`` (unless given a place already)."""
        return self if self.loggers is None else dataclasses.replace(self, loggers=self.loggers.under(directory, title))

    def logging(self) -> contextlib.AbstractContextManager:
        """Keep the loggers open for the block; close them at its end (W&B's run is finished there)."""
        return self.loggers if self.loggers is not None else contextlib.nullcontext()

    def trainer(self, max_epochs: int, *, callbacks: Sequence[Callback] = (), description: str = "fit",
                log_as: str | Sequence[str] | None = None) -> L.Trainer:
        """A quiet Trainer: no checkpoints, no model summary, the benchmark's own progress bar, and a logger
        only where loggers were asked for and the fit has a name.

        Args:
            max_epochs: epochs of this fit (0 runs no step but still fires the fit-end callbacks).
            callbacks: extra callbacks (metrics, attacks).
            description: the label of this fit's bar.
            log_as: the name the fit logs under (:func:`~benchmark.engine.loggers.log_name`), or its members'
                names for a group whose modules log ``<name>/<key>``; None logs nothing.
        """
        # first, so the metric callbacks after it score rank 0's weights on every rank
        every = [BroadcastWeights(), *callbacks]
        if self.progress is not None:
            every.append(FitProgress(self.progress, description))
        kwargs = {"accelerator": "cpu", "devices": 1, "deterministic": False, **self.trainer_kwargs}
        logger = self.loggers.fit_logger(log_as) if self.loggers is not None and log_as else False
        return L.Trainer(max_epochs=max_epochs, logger=logger, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=every, **kwargs)

    def phase(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Mark the block as the engine's phase ``name`` (timed only when a :class:`PhaseTimer` is attached)."""
        return self.phases.phase(name) if self.phases is not None else contextlib.nullcontext()

    def single_device(self) -> bool:
        """One device on one node: what exact grouped training needs (several would split batches)."""
        devices = self.trainer_kwargs.get("devices", 1)
        return devices in (1, "1", [0]) and self.trainer_kwargs.get("num_nodes", 1) == 1


DEFAULT_FIT = FitSettings()


def check_trainer_settings(fit: FitSettings) -> None:
    """Build one Trainer from ``fit`` before any work, so settings Lightning refuses (an accelerator this
    machine lacks, an unknown precision or strategy) end the command with Lightning's reason on one line
    instead of a traceback from the first fit. Raises :class:`ConfigError`."""
    try:
        with quiet_lightning():  # no "GPU available" banners for a Trainer that fits nothing
            fit.trainer(0)
    except (MisconfigurationException, ValueError, TypeError) as exc:  # what Lightning raises for bad settings
        settings = ", ".join(f"{k}={v!r}" for k, v in fit.trainer_kwargs.items())
        reason = " ".join(str(exc).split())  # one line, as every user error is
        raise ConfigError(f"Lightning refuses the Trainer settings ({settings}): {reason}") from None


def rendezvous(fit: FitSettings = DEFAULT_FIT) -> int:
    """Start every process of a multi-process run before the grid consults the disk; return the world size.

    A zero-epoch fit makes Lightning launch ranks > 0 (or join those the scheduler started) and set up
    the process group, which the first real fit would otherwise do halfway through the grid, after rank
    0 had already read the cache alone. Single-process settings return 1 without fitting anything.
    """
    trainer = fit.trainer(0)
    check_strategy(trainer)
    if trainer.world_size <= 1:
        return 1
    if not distributed():
        one = DataLoader(TensorDataset(torch.zeros(1, 1)), batch_size=1)
        trainer.fit(NothingModule(), train_dataloaders=one)
    return torch.distributed.get_world_size() if distributed() else 1
