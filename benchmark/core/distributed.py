"""Running one benchmark over several processes (Lightning's ``ddp``: several devices, several nodes).

Every process runs the whole grid: Lightning's ``ddp`` launcher re-runs the command line for ranks > 0
(SLURM's ``srun`` and ``torchrun`` start them all themselves), so each rank walks the same cells in the
same order and every ``Trainer.fit`` is a collective of all ranks. That holds only while every rank
takes the same branch wherever the shared disk is consulted (is this model cached? is this cell done?
did this shard get the lock?), so those answers are decided by rank 0 and broadcast (:func:`agree`).
Only rank 0 writes rows and cache entries (:func:`is_writer`); evaluation never goes through a
sampler: each rank computes full outputs of the same model itself, so no sample is padded or seen twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import lightning as L
import torch
import torch.distributed as dist
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback

from benchmark.core.errors import ConfigError

T = TypeVar("T")


def distributed() -> bool:
    """True inside a process group of more than one process (after :func:`rendezvous`)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank: from the process group once it exists, else from the launcher's
    environment (Lightning reads ``RANK``, ``SLURM_PROCID``, ``LOCAL_RANK`` ... at import)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(getattr(rank_zero_only, "rank", 0) or 0)


def is_writer() -> bool:
    """Only global rank 0 writes result rows and cache entries."""
    return rank() == 0


def agree(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, its value on every rank: one decision for all, so no rank enters a fit
    (a collective) that the others skip. An exception on rank 0 is raised on every rank."""
    if not distributed():
        return compute()
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", compute())
        except Exception as exc:  # re-raised everywhere below, so no rank waits forever for the others
            box[0] = ("error", exc)
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise value
    return value


def every_rank(trainer: L.Trainer | None, flag: bool) -> bool:
    """True on every rank when ``flag`` holds on every rank of ``trainer``'s processes, else False on every
    rank: a step's decision that all ranks must take together (a rank that stopped alone would leave the
    others waiting forever in the next gradient all-reduce). A collective, so every rank calls it at the
    same step; a single process (or no Trainer) gets ``flag`` back without any communication."""
    if trainer is None or trainer.world_size <= 1:
        return flag
    return trainer.strategy.reduce_boolean_decision(flag, all=True)


class NothingModule(L.LightningModule):
    """The smallest module a Trainer accepts: the engine's rendezvous fits it to start every process."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.weight * batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def check_strategy(trainer: L.Trainer) -> None:
    """Refuse strategies whose fits run in worker processes (``ddp_spawn``, ``ddp_notebook``): the metric
    callbacks would score the model there and their scores would never reach the process writing the row."""
    launcher = getattr(trainer.strategy, "launcher", None)
    if launcher is not None and type(launcher).__name__ == "_MultiProcessingLauncher":
        raise ConfigError(f"strategy {type(trainer.strategy).__name__} fits in spawned worker processes, which the "
                         "benchmark's callbacks cannot report from; use strategy 'ddp' (Lightning launches one "
                         "process per device), srun (SLURM) or torchrun")


class BroadcastWeights(Callback):
    """At the end of every fit, copy rank 0's weights and buffers to every rank.

    DDP keeps parameters equal, but buffers such as BatchNorm's running statistics are updated by each
    rank's own last batches; without this, ranks would score (and rank 0 cache) slightly different models.
    Runs in ``on_fit_end`` (also fired by zero-epoch fits), where Lightning has already moved the module
    to the CPU, so each tensor travels through the strategy's device (NCCL needs GPU tensors).
    """

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size <= 1 or not distributed():
            return
        device = trainer.strategy.root_device
        for tensor in pl_module.state_dict().values():
            buffer = tensor.detach().to(device).contiguous()
            dist.broadcast(buffer, src=0)
            tensor.copy_(buffer.to(tensor.device))

