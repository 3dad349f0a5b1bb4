"""Training K models of one architecture and recipe at once, in one Lightning loop.

The bank trains many small models (originals, references, shadows) with the same recipe on the same
split. One at a time, every step of such a model pays Lightning's fixed per-step cost (hooks, the
optimiser closure, bookkeeping: about as much as the small presets' whole forward and backward pass) and
its own DataLoader round. Grouped, one Lightning step advances all K members, each on its own next batch.

Each member stays the model it would be if trained alone:

- it starts from its own initial weights (the caller builds it with ``seeded_build(build, seed)``);
- it sees its own batches in its own order: the group iterates the member's own seeded DataLoader, so
  the order comes from the real sampler and its generator, not from a re-implementation;
- the loss is the sum over members of each member's mean cross-entropy, so the gradient reaching a member
  is its own loss's gradient; SGD (momentum, weight decay) and Adam update each element from its own
  gradient and state only, so one optimiser over all members is K separate optimisers; the schedule is
  per epoch and equal for all members.

Two ways to run the members' forward passes:

- :class:`GroupedClassifier` (the default) runs each member's own forward pass: the same kernels on the
  same shapes as a sequential fit, so each member ends bit for bit where its sequential fit ends (with
  BatchNorm too: each member keeps its own buffers);
- :class:`StackedClassifier` (``vectorise=True``) stacks the weights along a new leading dimension
  (:func:`torch.func.stack_module_state`) and runs one ``vmap``-ed :func:`torch.func.functional_call`.
  Batched matrix products sum in another order, so members equal sequential fits only up to rounding, and
  training amplifies rounding: on digits' MLP most members end within 1e-5 of their sequential fit after
  30 epochs but one of 16 ended 3e-2 away, and after stacking the bank one attack score of one cell moved by
  one test sample. On a 2-core CPU it was no faster than the grouped loop (16 digits models, 30 epochs:
  21.0 s stacked, 15.3 s grouped, 55.6 s sequential), so the suite uses the exact grouped loop; the
  vectorised one is kept for accelerators, where one large kernel may beat K small ones.

What cannot be grouped exactly is refused by :func:`stack_refusal`, and the caller trains those models
one by one.

Which of the two a bank uses is ``FitSettings.stacking``: ``grouped`` (the default: exact, so every cached model
and every row is what sequential fits give, whatever the machine's speed), ``vmap``, or ``auto``, which times a
few steps of each on throwaway members for the model and device at hand (:func:`choose_stacking`) and keeps the
faster. A vectorised bank's models are their own reference: their cache keys record the path, so the same
seed gives the same models on the same machine and path, and the two paths never share cache entries.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Iterator, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state
from torch.utils.data import DataLoader

from benchmark.core.epoch_mean import EpochMean
from benchmark.core.recipes import TrainRecipe, make_lightning_optimizers
from benchmark.engine.fitting import DEFAULT_FIT, FitSettings
from benchmark.engine.training import TRAIN_LOSS

# Layers whose training-mode forward draws from the global RNG: stacked members would share one stream.
RANDOM_LAYERS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
# Layers normalising with batch statistics. Vectorised, they compute the same as alone to rounding (forward and
# first gradients agree to 1e-7), but training through them amplifies rounding chaotically: on mnist5k's
# small_cnn (lr 0.1) a stacked member differed from its sequential fit by 6e-7 after 1 step, 7e-4 after 10
# and 5e-2 after 30, so the vectorised stack would not reproduce the sequential models.
BATCH_STAT_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def stack_refusal(model: nn.Module, *, fit: FitSettings = DEFAULT_FIT, vectorise: bool = False) -> str | None:
    """Why models like ``model`` cannot be trained as an exact group (or stack), or None when they can.

    Args:
        model: one freshly built member.
        fit: the fit settings (several devices would shard each member's loader).
        vectorise: asking about the vectorised stack, which also refuses batch statistics.
    """
    if any(isinstance(m, RANDOM_LAYERS) for m in model.modules()):
        return "dropout draws from one global RNG stream, which grouped members would share"
    if vectorise and any(isinstance(m, BATCH_STAT_LAYERS) for m in model.modules()):
        return "training through batch statistics amplifies the stack's rounding differences chaotically"
    if not fit.single_device():
        return "several devices would split each member's batches differently from a single-device fit"
    return None


class StackedBatches:
    """Per step, every member's own next batch, stacked: images (K, B, ...) and labels (K, B).

    Iterating the members' own DataLoaders (each with its own seeded generator) gives every member the
    exact batches and order its own fit would see; all members share one split, so their loaders have
    the same length and batch sizes.
    """

    def __init__(self, loaders: Sequence[DataLoader]) -> None:
        lengths = {len(loader) for loader in loaders}
        if len(lengths) != 1:
            raise ValueError(f"stacked members need loaders of one length, got {sorted(lengths)}")
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for batches in zip(*self.loaders, strict=True):
            images, labels = zip(*batches, strict=True)
            yield torch.stack(images), torch.stack(labels)


class MemberLosses:
    """Each member's per-epoch mean loss, logged as ``<name>/train_loss``: the value its own fit logs as
    ``train_loss``. Without names (no logger) it adds nothing to a step."""

    def __init__(self, names: Sequence[str]) -> None:
        self.means = [EpochMean(f"{name}/{TRAIN_LOSS}") for name in names]

    def add(self, module: L.LightningModule, losses: Sequence[Tensor], batch_size: int) -> None:
        if self.means:
            for mean, loss in zip(self.means, losses, strict=True):
                mean.add(module, loss, weight=batch_size)


def _safe(name: str) -> str:
    """A parameter name usable as a module attribute (``body.1.weight`` -> ``body__1__weight``)."""
    return name.replace(".", "__")


class StackedClassifier(L.LightningModule):
    """K classifiers of one architecture trained as one module (one optimiser over stacked tensors).

    Args:
        models: the members, freshly built (each with its own seeded initial weights).
        recipe: the training recipe shared by all members.
        log_names: each member's name in the run's loggers (none: nothing logged).
    """

    def __init__(self, models: Sequence[nn.Module], recipe: TrainRecipe, log_names: Sequence[str] = ()) -> None:
        super().__init__()
        params, buffers = stack_module_state(list(models))
        self.param_names, self.buffer_names = list(params), list(buffers)
        self.stacked = nn.ParameterDict({_safe(n): nn.Parameter(p) for n, p in params.items()})
        for name, buffer in buffers.items():
            self.register_buffer(f"buffer__{_safe(name)}", buffer)
        # The architecture only: functional_call supplies every tensor, so it needs no storage of its own. Kept
        # out of the registered submodules, so that moving this module between devices never touches it.
        object.__setattr__(self, "template", copy.deepcopy(models[0]).to("meta").train())
        if getattr(self.template, "channels_last", False):  # vmap cannot restride its inputs; layout is moot here
            self.template.channels_last = False
        self.recipe = recipe
        self.size = len(models)
        self.member_losses = MemberLosses(log_names)

    def _state(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        params = {n: self.stacked[_safe(n)] for n in self.param_names}
        buffers = {n: getattr(self, f"buffer__{_safe(n)}") for n in self.buffer_names}
        return params, buffers

    def forward(self, images: Tensor) -> Tensor:
        """Logits (K, B, classes) of member k on its own images ``images[k]``."""

        def member(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.template, (params, buffers), (x,))

        return torch.vmap(member)(*self._state(), images)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        logits = self(images)
        per_sample = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
        losses = per_sample.view(labels.shape).mean(dim=1)  # each member's own mean loss
        self.member_losses.add(self, losses, batch_size=labels.shape[1])
        return losses.sum()

    def configure_optimizers(self):
        r = self.recipe
        return make_lightning_optimizers(self.stacked.values(), optimizer=r.optimizer, lr=r.lr, momentum=r.momentum,
                                         weight_decay=r.weight_decay, scheduler=r.scheduler, epochs=r.epochs)

    @torch.no_grad()
    def unstack_into(self, models: Sequence[nn.Module]) -> None:
        """Copy member k's trained weights and buffers (BatchNorm statistics) into ``models[k]``."""
        params, buffers = self._state()
        for k, model in enumerate(models):
            state = {n: t[k].detach().cpu() for n, t in (params | buffers).items()}
            model.load_state_dict(state)


class GroupedClassifier(L.LightningModule):
    """K classifiers trained in one Lightning loop, each running its own forward pass: exact, not vectorised.

    Every member computes with exactly the kernels, shapes and memory layout of its own fit, its loss's
    gradient reaches it unchanged (d sum / d loss_k = 1), and the CPU's default SGD and Adam update each
    parameter tensor on its own; so each member ends bit for bit where its sequential fit ends. What the
    group saves is the per-step cost that does not depend on the model: Lightning's hooks, closure and
    bookkeeping run once per step for all K members.

    Args:
        models: the members, freshly built (each with its own seeded initial weights).
        recipe: the training recipe shared by all members.
        log_names: each member's name in the run's loggers (none: nothing logged).
    """

    def __init__(self, models: Sequence[nn.Module], recipe: TrainRecipe, log_names: Sequence[str] = ()) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)
        self.recipe = recipe
        self.member_losses = MemberLosses(log_names)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        losses = [F.cross_entropy(model(images[k]), labels[k]) for k, model in enumerate(self.members)]
        self.member_losses.add(self, losses, batch_size=labels.shape[1])
        return sum(losses)

    def configure_optimizers(self):
        r = self.recipe
        return make_lightning_optimizers(self.members.parameters(), optimizer=r.optimizer, lr=r.lr,
                                         momentum=r.momentum, weight_decay=r.weight_decay, scheduler=r.scheduler,
                                         epochs=r.epochs)

    def unstack_into(self, models: Sequence[nn.Module]) -> None:
        """The members are the caller's models, trained in place; only move them back to the CPU."""
        for model in models:
            model.cpu()


def choose_stacking(build, loaders: Sequence[DataLoader], recipe: TrainRecipe, *, fit: FitSettings = DEFAULT_FIT,
                    steps: int = 20) -> dict[str, float | str]:
    """Time ``steps`` steps of the grouped and of the vectorised loop on throwaway members; the faster path.

    Args:
        build: ``build(k)`` -> a fresh member (its weights are thrown away).
        loaders: the members' loaders (only their first batches are drawn, from copies of their generators'
            state, so the real fits' batches are untouched).
        recipe: the training recipe.
        fit: the fit settings (the same device as the real fit).
        steps: steps per path after one warm-up fit.

    Returns:
        ``{"path": "grouped" | "vmap", "grouped_s": ..., "vmap_s": ...}``.
    """
    probe = FitSettings(trainer_kwargs={**fit.trainer_kwargs, "limit_train_batches": steps})
    one = dataclasses.replace(recipe, epochs=1)
    timings = {}
    for vectorise in (False, True, False, True):  # warm-up pass first, then the timed one, interleaved
        states = [loader.generator.get_state() if loader.generator is not None else None for loader in loaders]
        try:
            seconds = fit_stack([build(k) for k in range(len(loaders))], loaders, one, fit=probe,
                                description="stacking probe", vectorise=vectorise)
        finally:
            for loader, state in zip(loaders, states, strict=True):
                if state is not None:
                    loader.generator.set_state(state)
        timings["vmap_s" if vectorise else "grouped_s"] = seconds
    return {"path": "vmap" if timings["vmap_s"] < timings["grouped_s"] else "grouped", **timings}


def fit_stack(models: Sequence[nn.Module], loaders: Sequence[DataLoader], recipe: TrainRecipe, *, seed: int = 0,
              fit: FitSettings = DEFAULT_FIT, description: str = "train stack", vectorise: bool = False,
              labels: Sequence[str] | None = None) -> float:
    """Train ``models[k]`` on ``loaders[k]`` in place, all at once; return the stack's wall time in seconds.

    Args:
        models: freshly built members of one architecture (their initial weights are kept).
        loaders: each member's own shuffled loader over one shared split.
        recipe: the shared training recipe.
        seed: seeds Lightning's global state (nothing in a stackable fit draws from it).
        fit: Trainer arguments and progress display, as for a single fit.
        description: the label of the fit's bar.
        vectorise: one ``vmap``-ed forward for all members (:class:`StackedClassifier`; equal to sequential
            fits only up to rounding) instead of one forward per member (:class:`GroupedClassifier`; exact).
        labels: each member's name in the run's loggers, its loss logged under it (None logs nothing).
    """
    if len(models) != len(loaders) or not models:
        raise ValueError(f"need one loader per model, got {len(models)} models and {len(loaders)} loaders")
    L.seed_everything(seed, workers=True, verbose=False)
    names = list(labels) if labels is not None and fit.loggers is not None else []  # unlogged: no per-member means
    module = (StackedClassifier if vectorise else GroupedClassifier)(models, recipe, log_names=names)
    trainer = fit.trainer(recipe.epochs, description=description, log_as=names or None)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=StackedBatches(loaders))
    seconds = time.perf_counter() - start
    module.unstack_into(models)
    return seconds
