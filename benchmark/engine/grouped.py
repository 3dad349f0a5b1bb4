"""Unlearning K copies of one method at once, in one Lightning loop: the U-LiRA in-shadows of a cell.

U-LiRA unlearns each of the S in-shadows with the method under test (docs/protocol.md 4.4). One at a time,
the digits preset's 18 methods x 8 in-shadows were 144 separate fits and 63% of a cell's wall time
(``bench perf``): on small models a fit is mostly Lightning's fixed cost per fit and per step, not arithmetic.
Grouped, one Trainer and one loop advance every member, each on its own next batch.

Each member stays the fit it would be alone (the same contract as the bank's groups, :mod:`.stacked`):

- it is its own :class:`~methods.base.UnlearningMethod` instance, prepared on its own data with its own seed
  (masks, teachers, relabelled data), and it computes its own ``training_step`` on its own batches;
- its batches come from its own loaders, iterated by one :class:`~lightning.pytorch.utilities.CombinedLoader`
  that holds every member's loaders, so each DataLoader is re-iterated (and reshuffled by its own generator)
  exactly when it would be in the member's own fit;
- each step runs, per member, what Lightning's automatic optimisation runs: ``training_step``, ``zero_grad``,
  backward, ``on_before_optimizer_step``, the optimiser's step; the per-epoch schedules step at each epoch's
  end. Only the member's own tensors enter its arithmetic, so it ends bit for bit where its own fit ends
  (``tests/test_grouped.py`` checks every built-in method that groups);
- a member whose loss is not finite stops, as its own fit would, while the others go on; so does a member whose
  ``training_step`` returns None having set ``trainer.should_stop`` (an early stop checked before the step's
  update: SCAR, L2UL).

What cannot be grouped exactly is refused by :func:`group_refusal` (before the members are prepared) and
:func:`loaders_refusal` (after), and the caller fits those members one by one: manual optimisation or phased
loaders (SCRUB, UNSIR), hooks the group does not relay, randomness drawn from the global RNG during
training (dropout; augmentation draws from each loader's own generator), several devices, and Trainer
settings that change the optimisation step (precision, clipping, accumulation). A method may also opt out
with ``groupable = False`` (for example one whose ``training_step`` reads ``self.optimizers()``, which in a
group are every member's).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import nn

from benchmark.engine.fitting import FitSettings
from benchmark.engine.stacked import stack_refusal
from methods.base import UnlearningMethod

# Hooks a group does not call on its members: a method overriding one is fitted alone.
UNRELAYED_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
                   "on_before_zero_grad", "optimizer_step", "optimizer_zero_grad", "backward", "lr_scheduler_step",
                   "configure_gradient_clipping", "on_validation_epoch_start", "on_validation_epoch_end",
                   "validation_step", "setup", "teardown", "configure_callbacks", "on_load_checkpoint",
                   "on_save_checkpoint", "transfer_batch_to_device", "on_before_batch_transfer",
                   "on_after_batch_transfer")
# Hooks the group calls on each member, in the order its own fit would.
RELAYED_HOOKS = ("on_fit_start", "on_train_start", "on_train_epoch_start", "on_train_epoch_end", "on_train_end",
                 "on_fit_end")
# Trainer settings under which Lightning's step is more than backward-then-step.
STEP_CHANGING = {"precision": (None, 32, "32", "32-true"), "gradient_clip_val": (None, 0, 0.0),
                 "accumulate_grad_batches": (None, 1)}


def group_refusal(method: UnlearningMethod, *, fit: FitSettings) -> str | None:
    """Why copies of ``method`` cannot be fitted as one exact group, or None; known before any is prepared.

    Args:
        method: one member (its class, optimisation mode and model are read).
        fit: the fit settings.
    """
    cls = type(method)
    if not getattr(cls, "groupable", True):
        return f"{cls.name} declares groupable = False"
    if not method.automatic_optimization:
        return "it optimises manually"
    overridden = [h for h in UNRELAYED_HOOKS if getattr(cls, h) is not getattr(L.LightningModule, h)]
    if overridden:
        return f"it overrides {', '.join(overridden)}, which a group does not relay"
    for key, plain in STEP_CHANGING.items():
        if fit.trainer_kwargs.get(key) not in plain:
            return f"--trainer {key}={fit.trainer_kwargs[key]} changes Lightning's optimisation step"
    return stack_refusal(method.model, fit=fit)


def loaders_refusal(loaders: Sequence[object]) -> str | None:
    """Why the prepared members' ``unlearning_data`` cannot be iterated as one group, or None."""
    if not all(isinstance(loader, CombinedLoader) for loader in loaders):
        return "its batches do not come from one CombinedLoader (phased loaders)"
    if len({_shape(loader) for loader in loaders}) != 1:
        return "its members' loaders differ in structure or length"
    return None


def _shape(loader: CombinedLoader) -> tuple:
    """The structure, mode and per-loader lengths of a CombinedLoader: members must agree on all three."""
    return (loader._mode, tuple(sorted(loader.iterables)) if isinstance(loader.iterables, dict) else None,
            tuple(len(part) for part in loader.flattened))


def _split_optimisers(configured) -> tuple[torch.optim.Optimizer, object | None]:
    """(optimiser, per-epoch scheduler or None) from what ``make_lightning_optimizers`` returns."""
    if isinstance(configured, torch.optim.Optimizer):
        return configured, None
    if isinstance(configured, dict) and isinstance(configured.get("optimizer"), torch.optim.Optimizer):
        schedule = configured.get("lr_scheduler")
        if isinstance(schedule, dict):
            if schedule.get("interval", "epoch") != "epoch":
                raise ValueError("a grouped member's scheduler must step per epoch")
            schedule = schedule["scheduler"]
        return configured["optimizer"], schedule
    raise ValueError(f"a grouped member must configure one optimiser (and a scheduler), got {type(configured)}")


class MethodGroup(L.LightningModule):
    """K members of one method trained in one Lightning loop, each exactly as in its own fit.

    Args:
        members: the prepared members.
        labels: each member's name in logs (``shadow/ft-3/forget-3_seed-0``: :mod:`benchmark.engine.loggers`).
    """

    def __init__(self, members: Sequence[UnlearningMethod], labels: Sequence[str]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.automatic_optimization = False  # each member's step is run by hand, in Lightning's order
        self.active = [True] * len(members)
        self.schedules: list[object | None] = []
        for member, label in zip(members, labels, strict=True):
            member.epoch_loss.name = f"{label}/{member.epoch_loss.name}"

    def setup(self, stage: str) -> None:
        for member in self.members:  # Lightning attaches the trainer to LightningModule children only
            member.trainer = self.trainer

    def configure_optimizers(self):
        optimisers, self.schedules = [], []
        for member in self.members:
            optimiser, schedule = _split_optimisers(member.configure_optimizers())
            optimisers.append(optimiser)
            self.schedules.append(schedule)
        return optimisers

    def _relay(self, hook: str, *args) -> None:
        for member in self.members:
            member._current_fx_name = hook
            getattr(member, hook)(*args)

    def training_step(self, batch: list, batch_idx: int) -> None:
        optimisers = self.optimizers()
        optimisers = optimisers if isinstance(optimisers, list) else [optimisers]
        for k, (member, member_batch) in enumerate(zip(self.members, batch, strict=True)):
            if not self.active[k]:
                continue
            stop = self.trainer.should_stop
            member._current_fx_name = "training_step"  # its EpochMean logs through it
            loss = member.training_step(member_batch, batch_idx)
            # not finite (on any rank: UnlearningMethod.checked agrees it across ranks) or stopped early before this
            # step's update: the member stops, as its own fit would; the group goes on
            if loss is None:
                self.active[k] = False
                self.trainer.should_stop = stop
                continue
            optimiser = optimisers[k].optimizer  # the raw optimiser: Lightning's wrapper would run its hooks
            optimiser.zero_grad()
            loss.backward()
            member.on_before_optimizer_step(optimiser)
            optimiser.step()
        if not any(self.active):
            self.trainer.should_stop = True

    def on_fit_start(self) -> None:
        self._relay("on_fit_start")

    def on_train_start(self) -> None:
        self._relay("on_train_start")

    def on_train_epoch_start(self) -> None:
        self._relay("on_train_epoch_start")

    def on_train_epoch_end(self) -> None:
        self._relay("on_train_epoch_end")
        for schedule in self.schedules:  # where Lightning steps a per-epoch schedule: after the epoch's hooks
            if schedule is not None:
                schedule.step()

    def on_train_end(self) -> None:
        self._relay("on_train_end")

    def on_fit_end(self) -> None:
        self._relay("on_fit_end")


def fit_group(members: Sequence[UnlearningMethod], loaders: Sequence[CombinedLoader], *, fit: FitSettings,
              labels: Sequence[str], description: str = "unlearn group") -> float:
    """Fit prepared ``members`` on their own ``loaders`` as one group (see :func:`group_refusal` first); return
    the group's wall time in seconds.

    Args:
        members: K prepared copies of one method (same epochs), trained in place.
        loaders: each member's ``unlearning_data``.
        fit: Trainer arguments and progress display, as for a single fit.
        labels: each member's name in logs: its loss is logged under it where the run has loggers.
        description: the label of the fit's bar.
    """
    batches = CombinedLoader([loader.iterables for loader in loaders], mode=loaders[0]._mode)
    group = MethodGroup(members, labels)
    trainer = fit.trainer(members[0].hparams.epochs, description=description, log_as=list(labels))
    start = time.perf_counter()
    trainer.fit(group, train_dataloaders=batches)
    return time.perf_counter() - start
