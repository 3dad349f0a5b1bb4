"""The benchmark grid: (seed x forget classes x method) cells, each unlearned and scored.

For each (seed, forget classes) the grid builds one :class:`~benchmark.engine.cell.Cell` (data, bank,
outputs), trains what the cache lacks, and runs every method's cell, appending one row each. A cell whose
row already exists (same configuration hash) is skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import benchmark
from attacks import AttackOptions
from benchmark.core.distributed import agree, is_writer
from benchmark.core.errors import ConfigError
from benchmark.core.quiet import quiet_lightning
from benchmark.engine.bank import ModelBank
from benchmark.engine.cache import ModelCache
from benchmark.engine.cell import Cell, build_datamodule, check_methods, preset_settings, run_cell
from benchmark.engine.fitting import DEFAULT_FIT, FitSettings, rendezvous
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.preset import Preset
from benchmark.engine.provenance import weight_settings
from benchmark.engine.shard import Shard, blocks
from benchmark.report.store import ResultStore
from datamodules.base import check_forget_classes


@dataclass
class GridSummary:
    """What a run did: rows written, cells skipped because they were done, models trained, outputs computed
    (inference passes and unlearned in-shadows: 0 when the cache had them all)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    trained_models: int = 0
    computed_outputs: int = 0
    out_dir: Path | None = None
    other_shards: int = 0  # cells of the grid that other shards run


@dataclass(frozen=True)
class RunPaths:
    """Where a run reads and writes.

    Args:
        out: the run directory with ``results.jsonl`` (default ``runs/<preset>``).
        cache: the model cache (default ``runs/cache``).
        data_root: where downloading presets keep their files (default: the preset's ``root``).
    """

    out: str | Path | None = None
    cache: str | Path | None = None
    data_root: str | None = None


@dataclass(frozen=True)
class Display:
    """What a run shows while it works.

    Args:
        progress: draw progress bars (on rank 0 only).
        console: where bars go (default: stderr).
        on_row: called with every new row as soon as it is written (``bench run --verbose`` prints it).
        lightning_messages: leave Lightning's own banners and warnings on (``--verbose``).
    """

    progress: bool = True
    console: Console | None = None
    on_row: Callable[[dict[str, Any]], None] | None = None
    lightning_messages: bool = False


def run_config(preset: Preset, options: AttackOptions, trained_with: dict[str, Any] | None = None) -> dict[str, Any]:
    """What every row of one run directory shares, recorded in its manifest (``ResultStore.claim``).

    Methods, forget classes and seeds may grow between runs into one directory (see
    :func:`~benchmark.engine.cell.preset_settings`); per-method hyperparameters stay in: a changed one
    would put two versions of a method into one leaderboard row. So do the fit settings that change trained
    weights (``trained_with``, :func:`~benchmark.engine.provenance.weight_settings`): rows of another precision or
    device count are other rows of the same cells. Absent for the defaults, so older manifests still match.
    """
    config = {"preset": preset.name, "version": benchmark.__version__, "protocol": benchmark.PROTOCOL,
              "settings": preset_settings(preset), "attacks": dataclasses.asdict(options)}
    return config | ({"trained_with": trained_with} if trained_with else {})


def check_bank(preset: Preset) -> None:
    """U-LiRA estimates a variance over each side's models, so a run needs at least two of each."""
    for flag, value in (("references", preset.bank.references), ("shadows", preset.bank.shadows)):
        if value < 2:
            raise ConfigError(f"--{flag} {value}: U-LiRA needs at least 2 {flag} to estimate a variance "
                              f"(set by --{flag} or the preset's bank.{flag})")


def check_neighbours(options: AttackOptions, num_classes: int, forget_classes: Sequence[int]) -> None:
    """MIA-NN's k must leave room among the retained classes; refused before anything is trained."""
    retained = num_classes - len(forget_classes)
    if not 1 <= options.neighbours <= retained:
        raise ConfigError(f"--neighbours {options.neighbours}: MIA-NN looks at 1 to {retained} neighbour classes "
                          f"(the classes retained when forgetting {list(forget_classes)})")


def fit_share(shard: Shard, start: int, cell: Cell, methods: Sequence[str], *, done: set[str]) -> int:
    """Train this shard's share of one group's bank models and unlearned shadows; return the next position.

    Every shard lists the same fits in the same order (bank first, then each cell's shadows), numbered
    on from ``start`` across groups so that small groups still spread over all shards, and fits those at
    its positions. A fit is a block: one shard's slice of a bank group or of a method's S in-shadows
    (:func:`~benchmark.engine.shard.blocks`), trained as one group, so sharding keeps the grouped fits.
    Finished cells keep their positions (shards started at different times must agree on them) but their
    shadows are not fitted, nor the bank of a finished group. Outputs land in the cache, where the cells of
    every shard find them; a fit whose owner has not got to it yet is done by whichever shard needs it
    first (locks).
    """
    fits: list[Callable[[], Any] | None] = [functools.partial(cell.bank.outputs_of_block, cell.outputs, block)
                                            for group in cell.bank.groups() for block in blocks(group, shard.count)]
    unfinished = False
    shadows = list(range(1, cell.preset.bank.shadows + 1))
    for name in methods:
        finished = cell.key(name) in done
        unfinished |= not finished
        fits += [functools.partial(cell.unlearned_shadow_outputs, name, cell.training_key(name), indices=block)
                 if not finished else None for block in blocks(shadows, shard.count)]
    for position, fit in enumerate(fits, start):
        if unfinished and fit is not None and shard.owns(position):
            fit()
    return start + len(fits)


def run_benchmark(preset: Preset, methods: Sequence[str], *, forget_classes: Sequence[Sequence[int]] | None = None,
                  seeds: Sequence[int] | None = None, options: AttackOptions | None = None,
                  shard: Shard | None = None, paths: RunPaths | None = None, fit: FitSettings = DEFAULT_FIT,
                  display: Display | None = None, command: str = "") -> GridSummary:
    """Run the grid and append one row per new cell to ``<paths.out>/results.jsonl``.

    Under a multi-process Trainer setting (``strategy="ddp"``, several devices or nodes) every process
    runs this same function; rank 0 alone writes. With ``shard``, only that shard's cells get rows, and
    the shard also trains its share of every group's bank and unlearned shadows (see :mod:`benchmark.engine.shard`).

    Args:
        preset: the loaded preset.
        methods: method names, in table order.
        forget_classes: forget-class sets (default: the preset's).
        seeds: seeds (default: the preset's).
        options: attack settings (the protocol's defaults when None).
        shard: the part of the grid this job runs (default: all of it).
        paths: the run directory, the model cache and the data root.
        fit: Lightning Trainer arguments (and phase timing) for every fit; its loggers (if any) write under
            ``<paths.out>/logs`` and also log every new row's metrics once.
        display: progress bars, per-row reports and Lightning's messages.
        command: the command line that started the run, recorded in every row (the leaderboard quotes it).
    """
    display = display or Display()
    with quiet_lightning(not display.lightning_messages):
        return _run_grid(preset, list(methods), forget_classes=forget_classes, seeds=seeds,
                         options=options or AttackOptions(), shard=shard or Shard(), paths=paths or RunPaths(),
                         fit=fit, display=display, command=command)


def _run_grid(preset: Preset, methods: list[str], *, forget_classes, seeds, options: AttackOptions, shard: Shard,
              paths: RunPaths, fit: FitSettings, display: Display, command: str) -> GridSummary:
    out_dir = Path(paths.out or Path("runs") / preset.name)
    cache = ModelCache(paths.cache or Path("runs") / "cache")
    store = ResultStore(out_dir)
    fc_sets = [tuple(fc) for fc in (forget_classes or preset.forget_classes)]
    seeds = list(seeds if seeds is not None else preset.seeds)
    summary = GridSummary(out_dir=out_dir)
    rendezvous(fit)  # every rank exists before the disk is read, so each answer can be shared
    check_bank(preset)
    agree(lambda: store.claim(run_config(preset, options, weight_settings(fit))))  # refuse to mix configurations
    done = agree(store.finished_hashes)
    positions = {cell: i for i, cell in enumerate((seed, fc, name) for seed in seeds for fc in fc_sets
                                                  for name in methods)}
    summary.other_shards = sum(not shard.owns(i) for i in positions.values())
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=display.console or Console(stderr=True),
                        disable=not display.progress or not is_writer(), transient=False)
    fit = fit.with_progress(progress).logging_under(out_dir, preset.name)  # logs/ in the run directory
    units = 0  # position of the next bank or shadow fit in the whole grid, for sharing them out
    with progress, fit.logging():
        grid = progress.add_task(f"[bold]{preset.name}[/]: cells", total=len(positions) - summary.other_shards)
        for seed in seeds:
            base_dm = build_datamodule(preset, seed, fc_sets[0], paths.data_root)
            for fc in fc_sets:
                check_forget_classes(fc, base_dm.num_classes)
                check_neighbours(options, base_dm.num_classes, fc)
            check_methods(methods, preset, base_dm)
            for fc in fc_sets:
                dm = base_dm.with_forget_classes(fc)
                cell = Cell(preset, dm, ModelBank(preset, dm, cache, fit=fit), OutputsProvider(dm, cache),
                            options=options, fit=fit, command=command)
                mine = [name for name in methods if shard.owns(positions[seed, fc, name])]
                if not shard.whole:
                    units = fit_share(shard, units, cell, methods, done=done)
                if not mine:
                    continue
                if shard.whole:  # sharded runs share the bank's fits out one by one instead (fit_share)
                    cell.bank.train_missing()  # in groups: one Lightning step trains many (engine.stacked)
                for name in mine:
                    progress.update(grid, description=f"[bold]{preset.name}[/]: {name} forget {list(fc)} seed {seed}")
                    row = run_cell(cell, name, done=done)
                    if row is None:
                        summary.skipped += 1
                    else:
                        if is_writer():
                            store.append(row)
                            if fit.loggers is not None:  # once, where the row is written: rank 0
                                fit.loggers.log_row(row)
                            if display.on_row is not None:
                                display.on_row(row)
                        summary.rows.append(row)
                    progress.advance(grid)
        progress.update(grid, description=f"[bold]{preset.name}[/]: done")
    summary.trained_models = len(cache.trained)
    summary.computed_outputs = len(cache.computed)
    return summary
