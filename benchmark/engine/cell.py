"""One benchmark cell: (preset, method, forget classes, seed), unlearned and scored into one result row.

A :class:`Cell` holds what every method of one (preset, seed, forget classes) shares: the data, the bank
of trained models, the outputs provider, the attack settings and the fit settings. :func:`run_cell`
hands a copy of the original to a method, fits it with the attack callbacks attached and returns its row.

Two keys per cell: the row's configuration hash (:func:`cell_config`, attack settings included: a re-run
skips a row whose hash is stored) and the training key (:func:`training_config`, without them: what
determines the unlearned model). Everything unlearned, the cell's model and its in-shadows, is cached under
the training key, so changing an attack setting re-scores from cached outputs and unlearns nothing again.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import lightning as L
from torch import nn

import benchmark
from attacks import AttackOptions, CellContext, lazy
from attacks.outputs import Outputs
from attacks.probe_data import ProbeData
from benchmark.core.errors import ConfigError
from benchmark.core.hashing import config_hash, derive_seed
from benchmark.engine.bank import ModelBank
from benchmark.engine.callbacks import attack_callbacks
from benchmark.engine.fitting import DEFAULT_FIT, FitSettings
from benchmark.engine.grouped import fit_group, group_refusal, loaders_refusal
from benchmark.engine.loggers import log_name
from benchmark.engine.models import model_layout
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.phases import SHADOW_UNLEARNING, UNLEARNING
from benchmark.engine.preset import Preset
from benchmark.engine.probe_records import ProbeRecords
from benchmark.engine.provenance import provenance, weights_key
from benchmark.report.store import finite_metrics
from datamodules import get_datamodule_class
from datamodules.base import MethodData, UnlearningDataModule, augmentation_key
from methods.base import UnlearningMethod, get_method


def build_datamodule(preset: Preset, seed: int, forget_classes: Sequence[int] | None = None,
                     data_root: str | None = None) -> UnlearningDataModule:
    """The preset's DataModule for ``seed``, downloaded if asked and set up."""
    cls = get_datamodule_class(preset.dataset)
    dm = cls(data_root or preset.root, forget_classes=forget_classes or preset.forget_classes[0], seed=seed,
             batch_size=preset.unlearn_batch_size, val_fraction=preset.val_fraction,
             test_fraction=preset.test_fraction, download=preset.download, augment=preset.augment)
    dm.prepare_data()
    dm.setup()
    return dm


def instantiate_method(name: str, model: nn.Module, preset: Preset, dm: UnlearningDataModule,
                       seed: int) -> UnlearningMethod:
    """The method ``name`` on ``model`` with the preset's hyperparameters (recipe defaults first)."""
    cls = get_method(name)
    hparams = cls.recipe_defaults(preset.train) | preset.method_hparams(name)
    try:
        return cls(model, num_classes=dm.num_classes, forget_classes=dm.forget_classes, seed=seed, **hparams)
    except (TypeError, ValueError) as exc:  # a misspelt or out-of-range hyperparameter in the preset
        raise ConfigError(f"preset {preset.name!r}: bad hyperparameters for method {name!r}: {exc}") from None


def check_methods(names: Sequence[str], preset: Preset, dm: UnlearningDataModule) -> None:
    """Fail before any training if a method is unknown or its preset hyperparameters are wrong."""
    for name in names:
        instantiate_method(name, nn.Linear(1, dm.num_classes), preset, dm, seed=0)


def prepare(method: UnlearningMethod, dm: UnlearningDataModule) -> tuple[Any, float]:
    """Seed ``method``'s randomness and run its ``prepare`` on the data it declared; return its training batches
    and the seconds ``prepare`` took.

    Training-free methods (zero epochs) get V's unshuffled loader: they still go through ``fit``, so the
    callbacks fire for them too.
    """
    data = MethodData(dm, method.uses, seed=method.hparams.seed)
    L.seed_everything(method.hparams.seed, workers=True, verbose=False)
    start = time.perf_counter()
    method.prepare(data)
    prepare_s = time.perf_counter() - start
    loader = method.unlearning_data(data) if method.hparams.epochs > 0 else dm.loader("V", shuffle=False)
    return loader, prepare_s


def unlearn(method: UnlearningMethod, dm: UnlearningDataModule, *, callbacks=(), fit: FitSettings = DEFAULT_FIT,
            description: str = "unlearn", log_as: str | None = None) -> float:
    """Run ``method``: :func:`prepare`, then ``Trainer.fit``; return the seconds spent. ``log_as``: the fit's
    name in the run's loggers (None logs nothing)."""
    with fit.phase(UNLEARNING):
        loader, prepare_s = prepare(method, dm)
        fit.trainer(method.hparams.epochs, callbacks=list(callbacks), description=description,
                    log_as=log_as).fit(method, train_dataloaders=loader)
    return prepare_s + method.train_time_s


def unlearn_together(methods: Sequence[UnlearningMethod], dm: UnlearningDataModule, *, fit: FitSettings,
                     labels: Sequence[str], description: str) -> tuple[bool, str]:
    """Unlearn fresh copies of one method as one group (:mod:`benchmark.engine.grouped`); return whether they
    were, and how (or why not: then nothing was trained and the caller fits them alone). ``labels``: each
    member's name in logs, under which its loss is logged where the run has loggers.

    Training-free members are prepared only: a zero-epoch fit runs no step.
    """
    refusal = group_refusal(methods[0], fit=fit)
    if refusal:
        return False, f"separate: {refusal}"
    loaders = [prepare(method, dm)[0] for method in methods]
    if methods[0].hparams.epochs == 0:
        return True, "training-free: prepared only"
    refusal = loaders_refusal(loaders)
    if refusal:
        return False, f"separate: {refusal}"
    fit_group(methods, loaders, fit=fit, labels=labels, description=description)
    return True, "grouped"


def probe_data(preset: Preset, dm: UnlearningDataModule) -> ProbeData:
    """What the probes that run models read (:mod:`attacks.probes`): the cell's unaugmented splits and the preset's
    hand-set fine-tuning (its ``ft`` values, else FT's defaults; never tuned ones, so that a new tuning of FT
    leaves the probe's strength alone)."""
    hand_set = dataclasses.replace(preset, tuned={})
    ft = instantiate_method("ft", nn.Linear(1, dm.num_classes), hand_set, dm, seed=0).hparams
    return ProbeData(split=functools.cache(lambda split: dm.dataset(split).tensors()), num_classes=dm.num_classes,
                     lr=ft.lr, momentum=ft.momentum, weight_decay=ft.weight_decay,
                     batch_size=ft.batch_size or preset.unlearn_batch_size)


def preset_settings(preset: Preset) -> dict[str, Any]:
    """The preset's fields that shape results. Left out: its grid axes (the forget-class sets and seeds
    it lists; a cell has its own, and a grid may grow), where its data lives and how it is described.
    Editing those must neither recompute a finished cell nor split a run directory."""
    settings = preset.to_dict()
    # tuning: where tuning ran (the tuned values themselves enter each row through the method's hyperparameters)
    for key in ("name", "forget_classes", "seeds", "description", "root", "download", "tuning", "tuned"):
        settings.pop(key)
    settings["augment"] = augmentation_key(settings["augment"])  # the scheme, for augmented presets
    return settings


def cell_config(preset: Preset, method: UnlearningMethod, dm: UnlearningDataModule,
                options: AttackOptions, fit: FitSettings = DEFAULT_FIT) -> dict[str, Any]:
    """Everything that determines a cell's row: its hash decides whether a re-run skips it.

    ``fit`` enters only through the settings that change trained weights (several devices, another precision
    or strategy: :func:`~benchmark.engine.provenance.weights_key`), and not at all for the single-device
    defaults, whose hashes are what they were before those settings were keyed."""
    # other methods' settings do not change this cell
    preset_part = preset_settings(preset) | {"name": preset.name, "methods": None}
    return {"preset": preset_part, "method": method.name, "hparams": method.method_hparams(),
            "forget_classes": list(dm.forget_classes), "seed": dm.seed, "split": dm.split_hash,
            "attacks": dataclasses.asdict(options), "version": benchmark.__version__, "protocol": benchmark.PROTOCOL,
            **model_layout(preset.model), **weights_key(fit)}


def training_config(preset: Preset, method: UnlearningMethod, dm: UnlearningDataModule,
                    fit: FitSettings = DEFAULT_FIT) -> dict[str, Any]:
    """What determines the cell's unlearned model (and its in-shadows' unlearned copies): the cell's
    configuration without what only scores it. The attack settings and the scoring protocol change no
    weights, nor do the bank's sizes (in-shadow i is keyed by its own bank key), so ``bench rescore`` finds
    a run's unlearned models after any of them changed. The weight-changing fit settings stay in."""
    config = cell_config(preset, method, dm, AttackOptions(), fit)
    for key in ("attacks", "protocol"):
        del config[key]
    del config["preset"]["bank"]
    return config


def unlearned_key(training_key: str) -> str:
    """The cache key of the outputs of the unlearned model of the cell whose training key is ``training_key``."""
    return config_hash({"unlearned": training_key})


@dataclass
class Cell:
    """What every method of one (preset, seed, forget classes) shares.

    Args:
        preset: the loaded preset.
        dm: the set-up DataModule of this seed and forget classes.
        bank: the cached original, oracle, references and in-shadows.
        outputs: one inference pass per model and split, cached.
        options: the attack settings.
        fit: Trainer arguments, progress display and phase timing of every fit.
        command: the command line recorded in every row.
    """

    preset: Preset
    dm: UnlearningDataModule
    bank: ModelBank
    outputs: OutputsProvider
    options: AttackOptions = field(default_factory=AttackOptions)
    fit: FitSettings = DEFAULT_FIT
    command: str = ""
    shared: dict[str, Any] = field(default_factory=dict)  # what every method's callbacks share (the nulls)
    shadow_fits: dict[str, str] = field(default_factory=dict)  # method -> how its in-shadows were unlearned

    @functools.cached_property
    def original(self) -> nn.Module:
        return self.bank.original()[0]

    @functools.cached_property
    def oracle(self) -> tuple[nn.Module, dict[str, Any]]:
        return self.bank.oracle()

    @functools.cached_property
    def probe_data(self) -> ProbeData:
        return probe_data(self.preset, self.dm)

    def method(self, name: str, model: nn.Module | None = None, index: int = 0) -> UnlearningMethod:
        """Method ``name`` on a copy of the original (or of ``model``) with its own seed for ``index``
        (0: the cell's unlearned model; 1..S: the in-shadows)."""
        start = self.original if model is None else model
        return instantiate_method(name, copy.deepcopy(start), self.preset, self.dm,
                                  seed=derive_seed(self.dm.seed, "method", name, index))

    def probe(self, name: str) -> UnlearningMethod:
        """Method ``name`` on a stand-in model: its name and hyperparameters, without loading the original."""
        return instantiate_method(name, nn.Linear(1, self.dm.num_classes), self.preset, self.dm, seed=0)

    def key(self, name: str) -> str:
        """The configuration hash of method ``name``'s row in this cell: a re-run skips a cell whose hash
        is already stored."""
        return config_hash(cell_config(self.preset, self.probe(name), self.dm, self.options, self.fit))

    def training_key(self, name: str) -> str:
        """The hash of what determines method ``name``'s unlearned models in this cell (no attack settings)."""
        return config_hash(training_config(self.preset, self.probe(name), self.dm, self.fit))

    def about(self, role: str, name: str, index: int = 0) -> dict[str, Any]:
        """What an unlearned model of method ``name`` is, recorded with its cached outputs."""
        return {"role": role, "method": name, "index": index, "preset": self.preset.name, "seed": self.dm.seed,
                "forget_classes": list(self.dm.forget_classes)}

    def bank_outputs(self) -> list[Outputs]:
        """Every bank model's outputs on this cell's splits, computed once and cached: the original's and the
        in-shadows' too, which no attack reads today: an attack that comes to read them can still rescore old runs."""
        return [self.bank.outputs(self.outputs, role, index) for role, index in self.bank.members()]

    def log_name(self, kind: str, what: str) -> str:
        """The name a fit of this cell logs under (``unlearn/ft/forget-3_seed-0``: :mod:`.loggers`)."""
        return log_name(kind, what, self.dm.forget_classes, self.dm.seed)

    def unlearned_outputs(self, name: str, training_key: str) -> Outputs:
        """The cached outputs of method ``name``'s unlearned model (index 0), which :func:`run_cell` stores
        under its training key (``CellContext.method_key``). Runs no model: for ``bench rescore``, whose
        read-only cache raises :class:`~benchmark.engine.cache.MissingCacheEntry` when they are missing.

        Args:
            name: the method.
            training_key: :meth:`training_key` of ``name``.
        """
        return self.outputs.of(_no_model(name), f"unlearned {name}", cached_key=unlearned_key(training_key),
                               about=self.about("unlearned", name))

    def unlearned_shadow_outputs(self, name: str, training_key: str,
                                 indices: Sequence[int] | None = None) -> list[Outputs]:
        """The S in-shadows unlearned with method ``name``, same hyperparameters, own seeds.

        Outputs are cached under (shadow, training key), so neither a re-run nor a changed attack setting
        unlearns them again. ``indices`` (default 1..S) picks some of them: shards share one cell's
        shadow fits out. The missing ones are unlearned as one group where that is exact
        (:func:`unlearn_together`), else one by one; ``shadow_fits`` records which, and why.
        """
        indices = list(indices) if indices is not None else list(range(1, self.preset.bank.shadows + 1))
        keys = {i: config_hash({"unlearned_shadow": self.bank.key("original", i), "training": training_key})
                for i in indices}

        def unlearn_shadow(index: int) -> nn.Module:
            method = self.method(name, self.bank.shadow(index)[0], index)
            unlearn(method, self.dm, fit=self.fit, description=f"{name} on in-shadow {index}",
                    log_as=self.log_name("shadow", f"{name}-{index}"))
            return method.model

        with self.fit.phase(SHADOW_UNLEARNING):
            grouped = self._unlearn_shadow_group(name, [i for i in indices if not self._has_outputs(keys[i])])
            return [self.outputs.of(grouped[i] if i in grouped else functools.partial(unlearn_shadow, i),
                                    f"{name} shadow {i}", cached_key=keys[i],
                                    about=self.about("unlearned-shadow", name, i))
                    for i in indices]

    def _has_outputs(self, key: str) -> bool:
        cache = self.outputs.cache
        return cache is not None and cache.outputs(key, self.dm.split_hash) is not None

    def _unlearn_shadow_group(self, name: str, indices: Sequence[int]) -> dict[int, nn.Module]:
        """In-shadows ``indices`` unlearned with ``name`` as one group: {index: model}, or {} (then each is
        unlearned alone); how, and why, goes to ``shadow_fits`` and from there into the row's diagnostics."""
        if len(indices) < 2:
            if indices:
                self.shadow_fits[name] = "separate: one in-shadow to unlearn"
            return {}
        methods = [self.method(name, self.bank.shadow(i)[0], i) for i in indices]
        done, self.shadow_fits[name] = unlearn_together(
            methods, self.dm, fit=self.fit, labels=[self.log_name("shadow", f"{name}-{i}") for i in indices],
            description=f"{name} on {len(indices)} in-shadows")
        return {i: m.model for i, m in zip(indices, methods, strict=True)} if done else {}

    def context(self, name: str, training_key: str) -> CellContext:
        """What the attack callbacks read for method ``name`` (``training_key``: its :meth:`training_key`):
        every model collection is lazy, and the unlearned model's outputs are cached under its key."""
        oracle, oracle_meta = self.oracle
        bank, outputs = self.bank, self.outputs
        method_key = unlearned_key(training_key)
        outputs.describe(method_key, self.about("unlearned", name))  # the callbacks ask by key alone
        return CellContext(
            outputs=outputs, oracle=bank.outputs(outputs, "retrained", 0),
            oracle_meta=oracle_meta, forget_classes=self.dm.forget_classes, seed=self.dm.seed, options=self.options,
            references=lazy(lambda: bank.reference_outputs(outputs)),
            retrain_shadows=lazy(lambda: bank.retrain_shadow_outputs(outputs)),
            method_shadows=lazy(lambda: self.unlearned_shadow_outputs(name, training_key)), shared=self.shared,
            in_shadows=lazy(lambda: [bank.outputs(outputs, "original", i)
                                     for i in range(1, self.preset.bank.shadows + 1)]),
            method_key=method_key,
            # the probes that run models (attacks/probes.py), with their results kept under each model's key
            oracle_model=lambda: oracle, reference_models=lazy(lambda: [m for m, _ in bank.references()]),
            probe_data=self.probe_data, probe_store=ProbeRecords(outputs.cache, self.dm.split_hash, {
                "method": method_key, "oracle": bank.key("retrained", 0),
                "references": [bank.key("retrained", i) for i in range(1, self.preset.bank.references + 1)]}),
        )


def _no_model(name: str) -> Callable[[], nn.Module]:
    """Stands in for an unlearned model that only the cache may provide (reached only with a writable cache)."""

    def refuse() -> nn.Module:
        raise RuntimeError(f"the outputs of {name}'s unlearned model are not in the cache, and there is no "
                           "model to compute them from")

    return refuse


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def start_row(cell: Cell, method: UnlearningMethod, key: str) -> dict[str, Any]:
    """A row's fields before ``method`` is scored in ``cell``: what identifies it and when it started.

    Args:
        cell: the cell.
        method: the method (its name and hyperparameters are read, not its model).
        key: the row's configuration hash.
    """
    dm, preset = cell.dm, cell.preset
    return {
        "preset": preset.name, "dataset": dm.name, "model": preset.model, "method": method.name,
        "forget_classes": list(dm.forget_classes), "seed": dm.seed, "status": "ok",
        "metrics": {}, "oracle": {}, "hparams": method.method_hparams(), "config_hash": key,
        "split_hash": dm.split_hash, "version": benchmark.__version__, "protocol": benchmark.PROTOCOL,
        "started": _now(), "finished": "",
        "bank": {"references": preset.bank.references, "shadows": preset.bank.shadows},
        "split": dm.manifest()["sizes"], "command": cell.command,
        **({"tuning": tuning} if (tuning := preset.tuning_of(method.name)) else {}),
        # where and how it was made, in no hash; the bank's stacking as resolved (``auto`` measured), which
        # ``bench rescore`` needs to find vmap-stacked models under their own keys
        "provenance": provenance(cell.fit) | {"stacking": cell.bank.stacking},
    }


def finish_row(row: dict[str, Any], context: CellContext, started_s: float) -> dict[str, Any]:
    """Write the scores ``context`` gathered into ``row`` and close it; return it.

    Args:
        row: a row from :func:`start_row`.
        context: the scored cell context.
        started_s: ``time.perf_counter()`` when the cell's work began (its ``diagnostics.cell_s``).
    """
    row["metrics"] = finite_metrics(context.method_metrics)
    row["oracle"] = finite_metrics(context.oracle_metrics)
    row["diagnostics"] = context.diagnostics | {"cell_s": round(time.perf_counter() - started_s, 3)}
    row["finished"] = _now()
    return row


def run_cell(cell: Cell, name: str, *, done: set[str] = frozenset()) -> dict[str, Any] | None:
    """Unlearn method ``name`` in ``cell``, run every metric and attack, and return its row (None if its
    configuration hash is in ``done``: the row already exists)."""
    method = cell.method(name)
    key = config_hash(cell_config(cell.preset, method, cell.dm, cell.options, cell.fit))
    if key in done:
        return None
    context = cell.context(name, config_hash(training_config(cell.preset, method, cell.dm, cell.fit)))
    row = start_row(cell, method, key)
    start = time.perf_counter()
    try:
        # the bank and the unlearned shadows first, outside the cell's fit: a fit nested in a callback of
        # another would leave the ranks of a multi-device run at different collectives
        for need in (cell.bank_outputs, context.references, context.retrain_shadows, context.method_shadows):
            need()
        seconds = unlearn(method, cell.dm, callbacks=attack_callbacks(context), fit=cell.fit,
                          description=f"{name} forget {list(cell.dm.forget_classes)}",
                          log_as=cell.log_name("unlearn", name))
        oracle_s = float(context.oracle_meta["train_time_s"])
        context.method_metrics.update(time_s=seconds, time_ratio=seconds / oracle_s if oracle_s > 0 else float("nan"))
        context.oracle_metrics.update(time_s=oracle_s, time_ratio=1.0)
        if method.diverged or not method.weights_finite():
            row["status"] = "diverged"
    except Exception as exc:  # one broken cell must not stop the grid; the row says what happened
        row["status"] = "failed"
        row["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
    if name in cell.shadow_fits:  # only where this run unlearned them (a re-run reads them from the cache)
        context.diagnostics["shadow_fits"] = cell.shadow_fits[name]
    return finish_row(row, context, start)
