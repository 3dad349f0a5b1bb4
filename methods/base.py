"""``UnlearningMethod``: the one base class every unlearning method subclasses, and its registry.

A method is a LightningModule that starts from a copy of the original model. The base class owns
what methods share: the optimiser and schedule, the retain/forget batches, the divergence check,
timing and logging. Most methods override :meth:`UnlearningMethod.loss` only; methods with one-off
work (masks, teachers, relabelled data) also override :meth:`prepare` or :meth:`unlearning_data`;
methods with phases override ``training_step``. A method whose ``training_step`` reads the optimisers sets
``groupable = False``.

Defining a subclass with a ``name`` registers it::

    class MyMethod(UnlearningMethod):
        name = "my_method"
        uses = frozenset({"retain", "forget"})

        def loss(self, retain, forget):
            return self.cross_entropy(retain) - 0.1 * self.cross_entropy(forget)
"""

from __future__ import annotations

import copy
import importlib
import math
import time
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor, nn

from benchmark.core.distributed import every_rank
from benchmark.core.epoch_mean import EpochMean
from benchmark.core.errors import ConfigError, refuse_repeats
from benchmark.core.recipes import TrainRecipe, make_lightning_optimizers
from benchmark.core.registry import Registry
from datamodules.base import MethodData, check_forget_classes, check_uses
from methods.search import SearchSpace

Batch = tuple[Tensor, Tensor]
ENTRY_POINT_GROUP = "unlearning_bench.methods"


class UnlearningMethod(L.LightningModule):
    """Base class of every unlearning method.

    Args:
        model: a copy of the original model, changed in place.
        num_classes: number of classes K.
        forget_classes: the classes to unlearn.
        lr: learning rate.
        epochs: unlearning epochs (0 for training-free methods: they work in :meth:`prepare`).
        optimizer: ``sgd`` or ``adam``.
        momentum: SGD momentum.
        weight_decay: weight decay.
        scheduler: ``constant`` or ``cosine`` (per epoch).
        batch_size: batch size of the unlearning loaders (None: the preset's ``unlearn_batch_size``).
        seed: seed of the method's own randomness (random labels, re-initialisation, ...).
    """

    name: ClassVar[str]
    uses: ClassVar[frozenset[str]] = frozenset({"retain", "forget"})
    # Whether U-LiRA may unlearn this method's in-shadows as one exact group (benchmark/engine/grouped.py says
    # what the group relays and what it refuses on its own); False for a method whose step reads
    # ``self.optimizers()`` or the Trainer's optimisers, which a group shares between its members.
    groupable: ClassVar[bool] = True
    # What `bench tune` may vary, each with its published value (methods/search.py); empty: nothing to tune.
    search_space: ClassVar[SearchSpace] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # intermediate helper classes without a name stay unregistered
            register_method(cls)

    def __init__(self, model: nn.Module, *, num_classes: int, forget_classes: Sequence[int], lr: float = 0.01,
                 epochs: int = 5, optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 5e-4,
                 scheduler: str = "constant", batch_size: int | None = None, seed: int = 0) -> None:
        super().__init__()
        if epochs < 0 or lr < 0:
            raise ConfigError(f"{self.name}: epochs and lr must be >= 0, got epochs={epochs}, lr={lr}")
        self.save_hyperparameters(ignore=["model"])
        self.model = model.train()  # cached models arrive in eval mode; frozen BatchNorm would destabilise SGD
        self.num_classes = num_classes
        self.forget_classes = check_forget_classes(forget_classes, num_classes)
        self.retained_classes = tuple(k for k in range(num_classes) if k not in self.forget_classes)
        self.diverged = False
        self.epoch_loss = EpochMean("unlearn_loss")
        self.train_time_s = 0.0
        self._train_start: float | None = None

    # -- what a subclass provides ---------------------------------------------------------------------
    def prepare(self, data: MethodData) -> None:
        """One-off work before training (masks, teachers, similarities); training-free methods work here."""

    def unlearning_data(self, data: MethodData) -> CombinedLoader:
        """The training batches; by default the declared retain/forget data side by side."""
        return data.unlearn_dataloader(self.hparams.batch_size)

    def loss(self, retain: Batch | None, forget: Batch | None) -> Tensor:
        """The unlearning loss of one step; ``retain`` / ``forget`` are None when not declared."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss() or training_step()")

    @classmethod
    def recipe_defaults(cls, recipe: TrainRecipe) -> dict[str, Any]:
        """Hyperparameters taken from the preset's training recipe (Retrain takes the whole recipe)."""
        return {}

    # -- shared mechanics -----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def cross_entropy(self, batch: Batch) -> Tensor:
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def random_other_labels(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """For each label, a class drawn uniformly among the retained classes (never a forget class)."""
        retained = torch.tensor(self.retained_classes, device=labels.device)
        picks = torch.randint(len(retained), labels.shape, generator=generator).to(labels.device)
        return retained[picks]

    def training_step(self, batch: dict[str, Batch], batch_idx: int) -> Tensor | None:
        loss = self.loss(batch.get("retain"), batch.get("forget"))
        return self.checked(loss)

    def checked(self, loss: Tensor) -> Tensor | None:
        """Log the loss; on a non-finite loss mark the run diverged and stop training (None: no step). Under
        several processes the ranks decide together: one rank's non-finite loss stops every rank at this
        step, each marked diverged (a rank stopping alone would hang the others)."""
        if not every_rank(self._trainer, bool(torch.isfinite(loss))):
            self.diverged = True
            self.trainer.should_stop = True
            return None if self.trainer.world_size == 1 else self._standstill()
        self.epoch_loss.add(self, loss)  # one self.log per epoch, not per step: see EpochMean
        return loss

    def _standstill(self) -> Tensor:
        """The last step of a diverged multi-process fit, leaving the weights as a skipped step would: DDP
        cannot skip a step (Lightning refuses None, and every rank's backward joins one gradient all-reduce),
        so every parameter gets a zero gradient and every optimiser a zero learning rate."""
        for optimiser in self.trainer.optimizers:
            for group in optimiser.param_groups:
                group["lr"] = 0.0
        return sum((p * 0).sum() for p in self.parameters() if p.requires_grad)

    def trainable_parameters(self):
        return self.model.parameters()

    def configure_optimizers(self):
        h = self.hparams
        return make_lightning_optimizers(self.trainable_parameters(), optimizer=h.optimizer, lr=h.lr,
                                         momentum=h.momentum, weight_decay=h.weight_decay,
                                         scheduler=h.scheduler, epochs=h.epochs)

    def weights_finite(self) -> bool:
        return all(torch.isfinite(p).all() for p in self.model.parameters())

    def on_train_start(self) -> None:
        self._train_start = time.perf_counter()

    def on_train_end(self) -> None:
        if self._train_start is not None:
            self.train_time_s = time.perf_counter() - self._train_start

    def method_hparams(self) -> dict[str, Any]:
        """The hyperparameters this run used, as stored in the result row."""
        skip = {"num_classes", "forget_classes", "seed"}
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
                for k, v in self.hparams.items() if k not in skip}


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every layer of ``model`` in place from ``seed`` (global RNG state untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
    return model


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen, eval-mode copy of ``model``: a teacher, or the original model kept for reference.

    Assign it to an attribute of the method so that Lightning moves it with the method's device.
    """
    teacher = copy.deepcopy(model).eval()
    teacher.requires_grad_(False)
    return teacher


def _check_method(cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, UnlearningMethod)):
        raise TypeError(f"{cls!r} is not a subclass of UnlearningMethod and cannot be registered")
    check_uses(cls.uses)


def _load_entry_point(name: str) -> None:
    """A name not registered yet: the built-in methods, then a package's entry point of that name."""
    import methods  # noqa: F401  (registers the built-in methods)

    if name not in METHODS:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                ep.load()


METHODS: Registry[type[UnlearningMethod]] = Registry("method", check=_check_method, on_miss=_load_entry_point)


def register_method(cls: type) -> type:
    """Register ``cls`` under ``cls.name``; wrong base classes and duplicate names are errors."""
    _check_method(cls)
    return METHODS.register(getattr(cls, "name", None), cls)


def load_plugin(module: str) -> None:
    """Import a user's module so that its UnlearningMethod subclasses register themselves."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # a plugin's own error, shown to the user with its type
        raise PluginError(f"could not import plugin module {module!r}: {type(exc).__name__}: {exc}") from exc


class PluginError(ConfigError, ImportError):
    """A ``--plugin`` module that does not import."""


def get_method(name: str) -> type[UnlearningMethod]:
    """The method registered as ``name``; a package entry point of that name is loaded on demand."""
    return METHODS.get(name)


# The order of the built-in methods in `bench list` and `--methods all`: the references first, then
# the baselines roughly by age. Methods from plugins follow in the order they registered.
BUILTIN_ORDER = ("original", "retrain", "ft", "ga", "neggrad_plus", "rl", "bs", "be", "l1", "salun", "scrub", "ssd",
                 "unsir", "bad_teacher", "svd", "amun", "l2ul", "unsc", "scar", "sfron", "uam", "delete", "rwft",
                 "trw")


def method_names() -> list[str]:
    import methods  # noqa: F401

    return sorted(METHODS.names(), key=lambda m: (BUILTIN_ORDER.index(m) if m in BUILTIN_ORDER else len(BUILTIN_ORDER)))


def resolve_methods(spec: str) -> list[str]:
    """``"all"`` or ``"a,b,c"`` -> method names; unknown names fail here, listing the known ones."""
    names = method_names() if spec == "all" else [m.strip() for m in spec.split(",") if m.strip()]
    if not names:
        raise ConfigError("--methods is empty: give 'all' or a comma-separated list")
    refuse_repeats("--methods", names, "method")
    for name in names:
        get_method(name)
    return names
