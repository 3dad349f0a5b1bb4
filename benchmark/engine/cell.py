"""One benchmark cell: (preset, method, forget classes, seed), unlearned and scored into one result row.

A :class:`Cell` holds what every method of one (preset, seed, forget classes) shares: the data, the bank
of trained models, the outputs provider, the attack settings and the fit settings. :func:`run_cell`
hands a copy of the original to a method, fits it with the attack callbacks attached and returns its row.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import lightning as L
from torch import nn

import benchmark
from attacks import AttackOptions, CellContext, lazy
from attacks.outputs import Outputs
from benchmark.core.errors import ConfigError
from benchmark.core.hashing import config_hash, derive_seed
from benchmark.engine.bank import ModelBank
from benchmark.engine.callbacks import attack_callbacks
from benchmark.engine.fitting import DEFAULT_FIT, FitSettings
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.phases import SHADOW_UNLEARNING, UNLEARNING
from benchmark.engine.preset import Preset
from benchmark.report.store import finite_metrics
from datamodules import get_datamodule_class
from datamodules.base import MethodData, UnlearningDataModule
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


def unlearn(method: UnlearningMethod, dm: UnlearningDataModule, *, callbacks=(), fit: FitSettings = DEFAULT_FIT,
            description: str = "unlearn") -> float:
    """Run ``method``: ``prepare`` on the data it declared, then ``Trainer.fit``; return the seconds spent.

    Training-free methods (zero epochs) still go through ``fit``, so the callbacks fire for them too.
    """
    with fit.phase(UNLEARNING):
        data = MethodData(dm, method.uses, seed=method.hparams.seed)
        L.seed_everything(method.hparams.seed, workers=True, verbose=False)
        start = time.perf_counter()
        method.prepare(data)
        prepare_s = time.perf_counter() - start
        epochs = method.hparams.epochs
        loader = method.unlearning_data(data) if epochs > 0 else dm.loader("V", shuffle=False)
        fit.trainer(epochs, callbacks=list(callbacks), description=description).fit(method, train_dataloaders=loader)
    return prepare_s + method.train_time_s


def preset_settings(preset: Preset) -> dict[str, Any]:
    """The preset's fields that shape results. Left out: its grid axes (the forget-class sets and seeds
    it lists; a cell has its own, and a grid may grow), where its data lives and how it is described.
    Editing those must neither recompute a finished cell nor split a run directory."""
    settings = preset.to_dict()
    for key in ("name", "forget_classes", "seeds", "description", "root", "download"):
        settings.pop(key)
    return settings


def cell_config(preset: Preset, method: UnlearningMethod, dm: UnlearningDataModule,
                options: AttackOptions) -> dict[str, Any]:
    """Everything that determines a cell's row: its hash decides whether a re-run skips it."""
    # other methods' settings do not change this cell
    preset_part = preset_settings(preset) | {"name": preset.name, "methods": None}
    return {"preset": preset_part, "method": method.name, "hparams": method.method_hparams(),
            "forget_classes": list(dm.forget_classes), "seed": dm.seed, "split": dm.split_hash,
            "attacks": dataclasses.asdict(options), "version": benchmark.__version__, "protocol": benchmark.PROTOCOL}


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

    @functools.cached_property
    def original(self) -> nn.Module:
        return self.bank.original()[0]

    @functools.cached_property
    def oracle(self) -> tuple[nn.Module, dict[str, Any]]:
        return self.bank.oracle()

    def method(self, name: str, model: nn.Module | None = None, index: int = 0) -> UnlearningMethod:
        """Method ``name`` on a copy of the original (or of ``model``) with its own seed for ``index``
        (0: the cell's unlearned model; 1..S: the in-shadows)."""
        start = self.original if model is None else model
        return instantiate_method(name, copy.deepcopy(start), self.preset, self.dm,
                                  seed=derive_seed(self.dm.seed, "method", name, index))

    def key(self, name: str) -> str:
        """The configuration hash of method ``name``'s row in this cell: a re-run skips a cell whose hash
        is already stored."""
        method = instantiate_method(name, nn.Linear(1, self.dm.num_classes), self.preset, self.dm, seed=0)
        return config_hash(cell_config(self.preset, method, self.dm, self.options))

    def unlearned_shadow_outputs(self, name: str, cell_key: str,
                                 indices: Sequence[int] | None = None) -> list[Outputs]:
        """The S in-shadows unlearned with method ``name``, same hyperparameters, own seeds.

        Outputs are cached under (shadow, cell configuration), so a re-run unlearns nothing again.
        ``indices`` (default 1..S) picks some of them: shards share one cell's shadow fits out.
        """

        def unlearn_shadow(index: int) -> nn.Module:
            method = self.method(name, self.bank.shadow(index)[0], index)
            unlearn(method, self.dm, fit=self.fit, description=f"{name} on in-shadow {index}")
            return method.model

        with self.fit.phase(SHADOW_UNLEARNING):
            return [self.outputs.of(functools.partial(unlearn_shadow, i), f"{name} shadow {i}",
                                    cached_key=config_hash({"unlearned_shadow": self.bank.key("original", i),
                                                            "cell": cell_key}))
                    for i in (indices if indices is not None else range(1, self.preset.bank.shadows + 1))]

    def context(self, name: str, key: str) -> CellContext:
        """What the attack callbacks read for method ``name``: every model collection is lazy."""
        oracle, oracle_meta = self.oracle
        bank, outputs = self.bank, self.outputs
        return CellContext(
            outputs=outputs, oracle=outputs.of(oracle, "oracle", cached_key=oracle_meta["key"]),
            oracle_meta=oracle_meta, forget_classes=self.dm.forget_classes, seed=self.dm.seed, options=self.options,
            references=lazy(lambda: bank.reference_outputs(outputs)),
            retrain_shadows=lazy(lambda: bank.retrain_shadow_outputs(outputs)),
            method_shadows=lazy(lambda: self.unlearned_shadow_outputs(name, key)), shared=self.shared,
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_cell(cell: Cell, name: str, *, done: set[str] = frozenset()) -> dict[str, Any] | None:
    """Unlearn method ``name`` in ``cell``, run every metric and attack, and return its row (None if its
    configuration hash is in ``done``: the row already exists)."""
    method = cell.method(name)
    key = config_hash(cell_config(cell.preset, method, cell.dm, cell.options))
    if key in done:
        return None
    dm, preset = cell.dm, cell.preset
    context = cell.context(name, key)
    row: dict[str, Any] = {
        "preset": preset.name, "dataset": dm.name, "model": preset.model, "method": name,
        "forget_classes": list(dm.forget_classes), "seed": dm.seed, "status": "ok",
        "metrics": {}, "oracle": {}, "hparams": method.method_hparams(), "config_hash": key,
        "split_hash": dm.split_hash, "version": benchmark.__version__, "protocol": benchmark.PROTOCOL,
        "started": _now(), "finished": "",
        "bank": {"references": preset.bank.references, "shadows": preset.bank.shadows},
        "split": dm.manifest()["sizes"], "command": cell.command,
    }
    start = time.perf_counter()
    try:
        # the bank and the unlearned shadows first, outside the cell's fit: a fit nested in a callback of
        # another would leave the ranks of a multi-device run at different collectives
        for need in (context.references, context.retrain_shadows, context.method_shadows):
            need()
        seconds = unlearn(method, dm, callbacks=attack_callbacks(context), fit=cell.fit,
                          description=f"{name} forget {list(dm.forget_classes)}")
        oracle_s = float(context.oracle_meta["train_time_s"])
        context.method_metrics.update(time_s=seconds, time_ratio=seconds / oracle_s if oracle_s > 0 else float("nan"))
        context.oracle_metrics.update(time_s=oracle_s, time_ratio=1.0)
        if method.diverged or not method.weights_finite():
            row["status"] = "diverged"
    except Exception as exc:  # one broken cell must not stop the grid; the row says what happened
        row["status"] = "failed"
        row["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
    row["metrics"] = finite_metrics(context.method_metrics)
    row["oracle"] = finite_metrics(context.oracle_metrics)
    row["diagnostics"] = context.diagnostics | {"cell_s": round(time.perf_counter() - start, 3)}
    row["finished"] = _now()
    return row
