"""The benchmark grid: (seed x forget classes x method) cells, each unlearned and scored.

For each cell the runner takes the original model and the oracle from the bank (training what the
cache lacks), hands a copy of the original to the method, fits it with the metric callbacks
attached, and appends one result row. A cell whose row already exists (same configuration hash) is
skipped, so an interrupted run resumes where it stopped.
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
from pathlib import Path
from typing import Any

import lightning as L
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

import benchmark
from attacks import ALL_CALLBACKS, AttackOptions, CellContext, lazy
from benchmark.bank import ModelBank, derive_seed
from benchmark.cache import ModelCache, config_hash
from benchmark.distributed import agree, is_writer, rendezvous
from benchmark.outputs import Outputs, OutputsProvider
from benchmark.preset import Preset
from benchmark.shard import Shard
from benchmark.store import ResultStore, finite_metrics
from benchmark.trainer import make_trainer
from datamodules import get_datamodule_class
from datamodules.base import MethodData, UnlearningDataModule, check_forget_classes
from methods.base import UnlearningMethod, get_method


@dataclass
class GridSummary:
    """What a run did: rows written, cells skipped because they were done, models trained."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    trained_models: int = 0
    out_dir: Path | None = None
    other_shards: int = 0  # cells of the grid that other shards run


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
    except TypeError as exc:
        raise ValueError(f"preset {preset.name!r}: bad hyperparameters for method {name!r}: {exc}") from None


def check_methods(names: Sequence[str], preset: Preset, dm: UnlearningDataModule) -> None:
    """Fail before any training if a method is unknown or its preset hyperparameters are wrong."""
    for name in names:
        instantiate_method(name, nn.Linear(1, dm.num_classes), preset, dm, seed=0)


def unlearn(method: UnlearningMethod, dm: UnlearningDataModule, *, callbacks=(), trainer_kwargs=None,
            progress=None, description: str = "unlearn") -> float:
    """Run ``method``: ``prepare`` on the data it declared, then ``Trainer.fit``; return the seconds spent.

    Training-free methods (zero epochs) still go through ``fit``, so the callbacks fire for them too.
    """
    data = MethodData(dm, method.uses, seed=method.hparams.seed)
    L.seed_everything(method.hparams.seed, workers=True, verbose=False)
    start = time.perf_counter()
    method.prepare(data)
    prepare_s = time.perf_counter() - start
    epochs = method.hparams.epochs
    loader = method.unlearning_data(data) if epochs > 0 else dm.loader("V", shuffle=False)
    trainer = make_trainer(epochs, callbacks=list(callbacks), trainer_kwargs=trainer_kwargs, progress=progress,
                           description=description)
    trainer.fit(method, train_dataloaders=loader)
    return prepare_s + method.train_time_s


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
            "attacks": dataclasses.asdict(options), "version": benchmark.__version__}


def run_config(preset: Preset, options: AttackOptions) -> dict[str, Any]:
    """What every row of one run directory shares, recorded in its manifest (``ResultStore.claim``).

    Methods, forget classes and seeds may grow between runs into one directory (see
    :func:`preset_settings`); per-method hyperparameters stay in: a changed one would put two versions
    of a method into one leaderboard row.
    """
    return {"preset": preset.name, "version": benchmark.__version__, "settings": preset_settings(preset),
            "attacks": dataclasses.asdict(options)}


def check_bank(preset: Preset) -> None:
    """U-LiRA estimates a variance over each side's models, so a run needs at least two of each."""
    for flag, value in (("references", preset.bank.references), ("shadows", preset.bank.shadows)):
        if value < 2:
            raise ValueError(f"--{flag} {value}: U-LiRA needs at least 2 {flag} to estimate a variance "
                             f"(set by --{flag} or the preset's bank.{flag})")


def check_neighbours(options: AttackOptions, num_classes: int, forget_classes: Sequence[int]) -> None:
    """MIA-NN's k must leave room among the retained classes; refused before anything is trained."""
    retained = num_classes - len(forget_classes)
    if not 1 <= options.neighbours <= retained:
        raise ValueError(f"--neighbours {options.neighbours}: MIA-NN looks at 1 to {retained} neighbour classes "
                         f"(the classes retained when forgetting {list(forget_classes)})")


def unlearned_shadow_outputs(preset: Preset, name: str, dm: UnlearningDataModule, bank: ModelBank,
                             outputs: OutputsProvider, cell_key: str, *, trainer_kwargs=None,
                             progress=None, indices: Sequence[int] | None = None) -> list[Outputs]:
    """The S in-shadows unlearned with the method under test, same hyperparameters, own seeds.

    Outputs are cached under (shadow, cell configuration), so a re-run unlearns nothing again.
    ``indices`` (default 1..S) picks some of them: shards share one cell's shadow fits out.
    """

    def unlearn_shadow(index: int) -> nn.Module:
        shadow, _ = bank.shadow(index)
        method = instantiate_method(name, copy.deepcopy(shadow), preset, dm,
                                    seed=derive_seed(dm.seed, "method", name, index))
        unlearn(method, dm, trainer_kwargs=trainer_kwargs, progress=progress,
                description=f"{name} on in-shadow {index}")
        return method.model

    return [outputs.of(functools.partial(unlearn_shadow, i), f"{name} shadow {i}",
                       cached_key=config_hash({"unlearned_shadow": bank.key("original", i), "cell": cell_key}))
            for i in (indices if indices is not None else range(1, preset.bank.shadows + 1))]


def run_cell(preset: Preset, name: str, dm: UnlearningDataModule, bank: ModelBank, outputs: OutputsProvider,
             original: nn.Module, oracle: nn.Module, oracle_meta: dict[str, Any], *, done: set[str],
             options: AttackOptions | None = None, trainer_kwargs=None, progress=None,
             command: str = "") -> dict[str, Any] | None:
    """Unlearn one method in one cell, run every metric and attack, and return its row
    (None if its row already exists)."""
    method = instantiate_method(name, copy.deepcopy(original), preset, dm,
                                seed=derive_seed(dm.seed, "method", name, 0))
    config = cell_config(preset, method, dm, options or AttackOptions())
    key = config_hash(config)
    if key in done:
        return None
    context = CellContext(
        outputs=outputs, oracle=outputs.of(oracle, "oracle", cached_key=oracle_meta["key"]),
        oracle_meta=oracle_meta, forget_classes=dm.forget_classes, seed=dm.seed, options=options or AttackOptions(),
        references=lazy(lambda: bank.reference_outputs(outputs)),
        retrain_shadows=lazy(lambda: bank.retrain_shadow_outputs(outputs)),
        method_shadows=lazy(lambda: unlearned_shadow_outputs(preset, name, dm, bank, outputs, key,
                                                             trainer_kwargs=trainer_kwargs, progress=progress)),
    )
    row: dict[str, Any] = {
        "preset": preset.name, "dataset": dm.name, "model": preset.model, "method": name,
        "forget_classes": list(dm.forget_classes), "seed": dm.seed, "status": "ok",
        "metrics": {}, "oracle": {}, "hparams": method.method_hparams(), "config_hash": key,
        "split_hash": dm.split_hash, "version": benchmark.__version__, "started": _now(), "finished": "",
        "bank": {"references": preset.bank.references, "shadows": preset.bank.shadows},
        "split": dm.manifest()["sizes"], "command": command,
    }
    start = time.perf_counter()
    try:
        # the bank and the unlearned shadows first, outside the cell's fit: a fit nested in a callback of
        # another would leave the ranks of a multi-device run at different collectives
        for need in (context.references, context.retrain_shadows, context.method_shadows):
            need()
        callbacks = [cls(context) for cls in ALL_CALLBACKS]
        seconds = unlearn(method, dm, callbacks=callbacks, trainer_kwargs=trainer_kwargs,
                          progress=progress, description=f"{name} forget {list(dm.forget_classes)}")
        oracle_s = float(oracle_meta["train_time_s"])
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


def bank_members(preset: Preset) -> list[tuple[str, int]]:
    """Every (role, index) of one group's bank that a cell reads (see :mod:`benchmark.bank`)."""
    m, s = preset.bank.references, preset.bank.shadows
    return [("original", i) for i in range(s + 1)] + [("retrained", i) for i in range(m + s + 2)]


def fit_share(shard: Shard, start: int, preset: Preset, methods: Sequence[str], dm: UnlearningDataModule,
              bank: ModelBank, outputs: OutputsProvider, *, done: set[str], options: AttackOptions | None,
              trainer_kwargs=None, progress=None) -> int:
    """Train this shard's share of one group's bank models and unlearned shadows; return the next position.

    Every shard lists the same fits in the same order (bank first, then each cell's shadows), numbered
    on from ``start`` across groups so that small groups still spread over all shards, and fits those at
    its positions. Finished cells keep their positions (shards started at different times must agree on
    them) but their shadows are not fitted, nor the bank of a finished group. Outputs land in the cache,
    where the cells of every shard find them; a fit whose owner has not got to it yet is done by
    whichever shard needs it first (locks).
    """
    fits: list[Callable[[], Any] | None] = [functools.partial(bank.outputs, outputs, role, index)
                                            for role, index in bank_members(preset)]
    unfinished = False
    for name in methods:
        method = instantiate_method(name, nn.Linear(1, dm.num_classes), preset, dm, seed=0)
        key = config_hash(cell_config(preset, method, dm, options or AttackOptions()))
        unfinished |= key not in done
        fits += [functools.partial(unlearned_shadow_outputs, preset, name, dm, bank, outputs, key,
                                   trainer_kwargs=trainer_kwargs, progress=progress, indices=[index])
                 if key not in done else None for index in range(1, preset.bank.shadows + 1)]
    for position, fit in enumerate(fits, start):
        if unfinished and fit is not None and shard.owns(position):
            fit()
    return start + len(fits)


def run_benchmark(preset: Preset, methods: Sequence[str], *, forget_classes: Sequence[Sequence[int]] | None = None,
                  seeds: Sequence[int] | None = None, out_dir: str | Path | None = None,
                  cache_dir: str | Path | None = None, data_root: str | None = None,
                  trainer_kwargs: dict[str, Any] | None = None, options: AttackOptions | None = None,
                  console: Console | None = None, show_progress: bool = True, command: str = "",
                  shard: Shard | None = None, report: Callable[[dict[str, Any]], None] | None = None) -> GridSummary:
    """Run the grid and append one row per new cell to ``out_dir/results.jsonl``.

    Under a multi-process Trainer setting (``strategy="ddp"``, several devices or nodes) every process
    runs this same function; rank 0 alone writes. With ``shard``, only that shard's cells get rows, and
    the shard also trains its share of every group's bank and unlearned shadows (see :mod:`benchmark.shard`).

    Args:
        preset: the loaded preset.
        methods: method names, in table order.
        forget_classes: forget-class sets (default: the preset's).
        seeds: seeds (default: the preset's).
        out_dir: the run directory (default ``runs/<preset>``).
        cache_dir: the model cache (default ``runs/cache``).
        data_root: where downloading presets keep their files (default: the preset's ``root``).
        trainer_kwargs: Lightning Trainer arguments for every fit.
        options: attack settings (SPEC defaults when None).
        console: where progress goes.
        show_progress: draw progress bars.
        command: the command line that started the run, recorded in every row (the leaderboard quotes it).
        shard: the part of the grid this job runs (default: all of it).
        report: called with every new row as soon as it is written (the CLI's ``--verbose`` prints it).
    """
    out_dir = Path(out_dir or Path("runs") / preset.name)
    cache = ModelCache(cache_dir or Path("runs") / "cache")
    store = ResultStore(out_dir)
    fc_sets = [tuple(fc) for fc in (forget_classes or preset.forget_classes)]
    seeds = list(seeds if seeds is not None else preset.seeds)
    summary = GridSummary(out_dir=out_dir)
    shard = shard or Shard()
    rendezvous(trainer_kwargs)  # every rank exists before the disk is read, so each answer can be shared
    check_bank(preset)
    agree(lambda: store.claim(run_config(preset, options or AttackOptions())))  # refuse to mix configurations
    done = agree(store.finished_hashes)
    positions = {cell: i for i, cell in enumerate((seed, fc, name) for seed in seeds for fc in fc_sets
                                                  for name in methods)}
    summary.other_shards = sum(not shard.owns(i) for i in positions.values())
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console or Console(stderr=True), disable=not show_progress or not is_writer(),
                        transient=False)
    units = 0  # position of the next bank or shadow fit in the whole grid, for sharing them out
    with progress:
        grid = progress.add_task(f"[bold]{preset.name}[/]: cells", total=len(positions) - summary.other_shards)
        for seed in seeds:
            base_dm = build_datamodule(preset, seed, fc_sets[0], data_root)
            for fc in fc_sets:
                check_forget_classes(fc, base_dm.num_classes)
                check_neighbours(options or AttackOptions(), base_dm.num_classes, fc)
            check_methods(methods, preset, base_dm)
            for fc in fc_sets:
                dm = base_dm.with_forget_classes(fc)
                bank = ModelBank(preset, dm, cache, trainer_kwargs=trainer_kwargs, progress=progress)
                outputs = OutputsProvider(dm, cache)
                mine = [name for name in methods if shard.owns(positions[seed, fc, name])]
                if not shard.whole:
                    units = fit_share(shard, units, preset, methods, dm, bank, outputs, done=done,
                                      options=options, trainer_kwargs=trainer_kwargs, progress=progress)
                if not mine:
                    continue
                if shard.whole:  # sharded runs share the bank's fits out one by one instead (fit_share)
                    bank.train_missing()  # in groups: one Lightning step trains many (benchmark.stacked)
                original, _ = bank.original()
                oracle, oracle_meta = bank.oracle()
                for name in mine:
                    progress.update(grid, description=f"[bold]{preset.name}[/]: {name} forget {list(fc)} seed {seed}")
                    row = run_cell(preset, name, dm, bank, outputs, original, oracle, oracle_meta, done=done,
                                   options=options, trainer_kwargs=trainer_kwargs, progress=progress, command=command)
                    if row is None:
                        summary.skipped += 1
                    else:
                        if is_writer():
                            store.append(row)
                            if report is not None:
                                report(row)
                        summary.rows.append(row)
                    progress.advance(grid)
        progress.update(grid, description=f"[bold]{preset.name}[/]: done")
    summary.trained_models = len(cache.trained)
    return summary
