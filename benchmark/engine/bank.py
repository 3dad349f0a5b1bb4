"""The models every method of a cell is compared against: the original, the oracle and (for the
attacks) reference models and in-shadows. Each is trained once through the plain classifier module
and cached under a hash of everything that determines it.

Seeds: every model gets its own seed derived from (cell seed, role, index); the original is
``original/0``, in-shadows ``original/1..S``; the oracle is ``retrained/0``, references
``retrained/1..M``, so the oracle is never a reference; ``retrained/M+1..M+S+1`` serve the oracle's
own U-LiRA (retraining seen as a method, docs/protocol.md 4.6).
"""

from __future__ import annotations

import functools
import platform
from typing import Any

import torch
from torch import nn

from attacks.outputs import Outputs
from benchmark.core.hashing import config_hash, derive_seed
from benchmark.engine.cache import ModelCache
from benchmark.engine.fitting import DEFAULT_FIT, FitSettings
from benchmark.engine.loggers import log_name
from benchmark.engine.models import build_model, model_layout
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.phases import BANK_TRAINING
from benchmark.engine.preset import Preset
from benchmark.engine.provenance import weights_key
from benchmark.engine.stacked import choose_stacking, fit_stack, stack_refusal
from benchmark.engine.training import fit_classifier, seeded_build
from datamodules.base import UnlearningDataModule, augmentation_key

TRAINING_CODE_VERSION = 2  # bump when training code changes what a cached model would contain


class ModelBank:
    """Cached original, oracle, references and in-shadows of one (preset, seed, forget classes).

    Args:
        preset: the preset (dataset, model, recipe).
        dm: the set-up DataModule of this seed and forget classes.
        cache: the model cache.
        fit: Trainer arguments and progress display of every fit.
    """

    def __init__(self, preset: Preset, dm: UnlearningDataModule, cache: ModelCache, *,
                 fit: FitSettings = DEFAULT_FIT) -> None:
        self.preset, self.dm, self.cache, self.fit = preset, dm, cache, fit

    def new_model(self) -> nn.Module:
        dm = self.dm
        return build_model(self.preset.model, num_classes=dm.num_classes, in_channels=dm.in_channels,
                           image_size=dm.image_size)

    def _config(self, role: str, index: int) -> dict[str, Any]:
        config = {"role": role, "index": index, "dataset": self.dm.name, "partition": self.dm.partition_hash,
                  "model": self.preset.model, "recipe": self.preset.train.to_dict(),
                  "augment": augmentation_key(self.dm.augment), "seed": self.dm.seed, "code": TRAINING_CODE_VERSION,
                  **model_layout(self.preset.model), **weights_key(self.fit)}  # several devices etc.: own keys
        if role == "retrained":
            config["forget_classes"] = list(self.dm.forget_classes)
        if self._vectorised(role, index):  # its own reference: never shares an entry with the exact path
            config["stacking"] = "vmap"
        return config

    def _vectorised(self, role: str, index: int) -> bool:
        return (role, index) != ("retrained", 0) and self.stacking == "vmap"  # the oracle always trains alone

    @functools.cached_property
    def stacking(self) -> str:
        """How this bank's groups train, ``grouped`` or ``vmap``: ``FitSettings.stacking``, where ``auto`` is
        measured once per model, recipe, data and device and remembered in the cache (so that the same command
        finds the same models again), and ``vmap`` falls back to ``grouped`` for models it cannot stack."""
        mode = self.fit.stacking
        if mode == "grouped" or stack_refusal(self.new_model(), fit=self.fit,
                                              vectorise=True):
            return "grouped"
        if mode == "vmap":
            return "vmap"
        members = self.stackable()[0][:8]
        probe = {"model": self.preset.model, "recipe": self.preset.train.to_dict(), "dataset": self.dm.name,
                 "size": len(self.dm.dataset("D")), "trainer": {k: str(v) for k, v in self.fit.trainer_kwargs.items()},
                 "host": platform.node(), "torch": torch.__version__}
        return self.cache.remember(
            "stacking", config_hash(probe), lambda: choose_stacking(
                lambda k: seeded_build(self.new_model, 10_000 + k)(), [self.member_loader(*m) for m in members],
                self.preset.train, fit=self.fit) | {"probe": probe})["path"]

    def key(self, role: str, index: int) -> str:
        """The cache key of a bank model, known without training or loading it."""
        return config_hash(self._config(role, index))

    def role_name(self, role: str, index: int) -> str:
        """What model (role, index) is for the protocol: original, in-shadow, oracle, reference or retrained
        (the further retrained models of the oracle's own attacks)."""
        if role == "original":
            return "original" if index == 0 else "in-shadow"
        return "oracle" if index == 0 else "reference" if index <= self.preset.bank.references else "retrained"

    def member_name(self, role: str, index: int) -> str:
        """A bank model's label in progress bars: ``oracle``, ``reference 2``, ``in-shadow 3``."""
        return self.role_name(role, index) + (f" {index}" if index else "")

    def log_name(self, role: str, index: int) -> str:
        """The name a bank model's fit logs under (``bank/reference-2/forget-3_seed-0``: :mod:`.loggers`)."""
        return log_name("bank", self.member_name(role, index), self.dm.forget_classes, self.dm.seed)

    def about(self, role: str, index: int) -> dict[str, Any]:
        """What a bank model is, recorded with its cache entries (the preset and seed of the cell that wrote
        it; forget classes only where the model depends on them, as in its key)."""
        about = {"role": self.role_name(role, index), "index": index, "preset": self.preset.name,
                 "seed": self.dm.seed}
        if role == "retrained":
            about["forget_classes"] = list(self.dm.forget_classes)
        return about

    def members(self) -> list[tuple[str, int]]:
        """Every (role, index) a cell reads: originals 0..S, then retrained models 0..M+S+1."""
        m, s = self.preset.bank.references, self.preset.bank.shadows
        return [("original", i) for i in range(s + 1)] + [("retrained", i) for i in range(m + s + 2)]

    def outputs(self, provider: OutputsProvider, role: str, index: int) -> Outputs:
        """A bank model's outputs, from the cache when they exist (the model is then never loaded)."""
        # outputs are on the cell's splits, so they depend on its forget classes even where the model does not
        about = self.about(role, index) | {"forget_classes": list(self.dm.forget_classes)}
        return provider.of(lambda: self._get(role, index)[0], f"{role}/{index}", cached_key=self.key(role, index),
                           about=about)

    def member_seed(self, role: str, index: int) -> int:
        """The seed of a bank model's initial weights and batch order."""
        return derive_seed(self.dm.seed, role, index)

    def member_loader(self, role: str, index: int):
        """The model's own shuffled loader: D for originals and in-shadows, D_r for retrained models."""
        split = "D" if role == "original" else "D_r"
        return self.dm.loader(split, shuffle=True, batch_size=self.preset.train.batch_size,
                              seed=self.member_seed(role, index))

    def _get(self, role: str, index: int) -> tuple[nn.Module, dict[str, Any]]:
        seed = self.member_seed(role, index)
        name = self.member_name(role, index)

        def train(model: nn.Module) -> dict[str, Any]:
            with self.fit.phase(BANK_TRAINING):
                if self._vectorised(role, index):  # a stack of one: the path its key records
                    seconds = fit_stack([model], [self.member_loader(role, index)], self.preset.train, seed=seed,
                                        fit=self.fit, description=f"train {name}", vectorise=True,
                                        labels=[self.log_name(role, index)])
                    return {"train_time_s": seconds, "epochs": self.preset.train.epochs, "stacking": "vmap"}
                return fit_classifier(model, self.member_loader(role, index), self.preset.train, seed=seed,
                                      fit=self.fit, description=f"train {name}", log_as=self.log_name(role, index))

        model, meta = self.cache.get_or_train(self._config(role, index), seeded_build(self.new_model, seed), train,
                                              about=self.about(role, index))
        return model.eval(), meta

    def stackable(self) -> list[list[tuple[str, int]]]:
        """The bank's models that may train as one group, one group per training split (D, then D_r).

        The oracle is trained alone: its ``train_time_s`` is the denominator of every row's ``time_ratio``,
        so it must be the wall time of one model trained alone, not a share of a group.
        """
        bank = self.preset.bank
        retrained = bank.references + bank.shadows + 1  # references, then the oracle's U-LiRA models
        return [[("original", i) for i in range(bank.shadows + 1)],
                [("retrained", i) for i in range(1, retrained + 1)]]

    def train_missing(self, max_stack: int = 32) -> int:
        """Train every groupable bank model the cache lacks, in groups; return how many.

        A group trains its members in one Lightning loop, each with the initial weights, batches and order
        of its own sequential fit and with the same arithmetic, so each ends bit for bit as that fit would
        (see :mod:`benchmark.engine.stacked`); it is stored exactly as :meth:`_get` would store it (same key, files
        and configuration), so later lookups load it and cached weights do not change. Models that cannot
        be grouped exactly (dropout, several devices: :func:`stack_refusal`) are left to the
        usual one-by-one fit.
        """
        if stack_refusal(self.new_model(), fit=self.fit):
            return 0
        trained = 0
        for group in self.stackable():
            missing = [m for m in group if not self._is_cached(*m)]
            for start in range(0, len(missing), max_stack):
                trained += self._train_stack(missing[start:start + max_stack])
        return trained

    def groups(self) -> list[list[tuple[str, int]]]:
        """Every bank model, in :meth:`members` order, as the groups that may train together: the
        :meth:`stackable` groups, with the oracle as a group of its own."""
        originals, retrained = self.stackable()
        return [originals, [("retrained", 0)], retrained]

    def outputs_of_block(self, provider: OutputsProvider, members: list[tuple[str, int]]) -> list[Outputs]:
        """The outputs of ``members`` (part of one of :meth:`groups`); those neither cached nor already
        evaluated are trained first as one group (exactly as alone, see :meth:`train_missing`), so a shard
        that owns part of the bank keeps the grouped fit."""
        if not stack_refusal(self.new_model(), fit=self.fit):
            self._train_stack([m for m in members if not self._is_cached(*m) and not provider.has(self.key(*m))
                               and m != ("retrained", 0)])  # the oracle trains alone (stackable)
        return [self.outputs(provider, *m) for m in members]

    def _is_cached(self, role: str, index: int) -> bool:
        return self.cache.has_model(self.key(role, index))

    def _train_stack(self, members: list[tuple[str, int]]) -> int:
        if not members:
            return 0
        models = [seeded_build(self.new_model, self.member_seed(*m))() for m in members]
        with self.fit.phase(BANK_TRAINING):
            seconds = fit_stack(models, [self.member_loader(*m) for m in members], self.preset.train,
                                seed=self.member_seed(*members[0]), fit=self.fit,
                                description=f"train {len(members)} bank models as one group",
                                vectorise=self.stacking == "vmap", labels=[self.log_name(*m) for m in members])
        # A member's train_time_s is its share of the group's wall time (the group's time divided by its size);
        # stack_size says so.
        meta = {"train_time_s": seconds / len(models), "epochs": self.preset.train.epochs, "stack_size": len(models),
                "stacking": self.stacking}
        for member, model in zip(members, models, strict=True):
            self.cache.get_or_train(self._config(*member), lambda model=model: model, lambda _model: dict(meta),
                                    about=self.about(*member))
        return len(models)

    def original(self) -> tuple[nn.Module, dict[str, Any]]:
        """theta_0: trained on D (independent of the forget classes)."""
        return self._get("original", 0)

    def oracle(self) -> tuple[nn.Module, dict[str, Any]]:
        """theta_R: retrained from scratch on D_r."""
        return self._get("retrained", 0)

    def references(self, count: int | None = None) -> list[tuple[nn.Module, dict[str, Any]]]:
        """M further models retrained on D_r with their own seeds."""
        count = self.preset.bank.references if count is None else count
        return [self._get("retrained", i) for i in range(1, count + 1)]

    def shadows(self, count: int | None = None) -> list[tuple[nn.Module, dict[str, Any]]]:
        """S further originals trained on D with their own seeds."""
        count = self.preset.bank.shadows if count is None else count
        return [self._get("original", i) for i in range(1, count + 1)]

    def shadow(self, index: int) -> tuple[nn.Module, dict[str, Any]]:
        """In-shadow ``index`` (1..S)."""
        return self._get("original", index)

    def reference_outputs(self, provider: OutputsProvider) -> list[Outputs]:
        return [self.outputs(provider, "retrained", i) for i in range(1, self.preset.bank.references + 1)]

    def retrain_shadow_outputs(self, provider: OutputsProvider) -> tuple[list[Outputs], Outputs]:
        """Retraining seen as an unlearning method (docs/protocol.md 4.6): S further retrained models as its
        "unlearned shadows" and one more as the model its U-LiRA scores; none is the oracle or a reference."""
        first = self.preset.bank.references + 1
        shadows = [self.outputs(provider, "retrained", i) for i in range(first, first + self.preset.bank.shadows)]
        return shadows, self.outputs(provider, "retrained", first + self.preset.bank.shadows)
