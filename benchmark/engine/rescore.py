"""Re-score finished rows from cached outputs: new attack settings, nothing trained.

``bench run`` caches the outputs of every model a row is scored on (the unlearned model under its training
key, the bank, the unlearned in-shadows; see :mod:`benchmark.engine.cell`). :func:`rescore_runs` rebuilds each
``ok`` or ``diverged`` row's cell from its preset, reads those outputs through a read-only
:class:`~benchmark.engine.cache.ModelCache` and runs every registered metric and attack again with other
attack settings (or after an attack changed). The new rows go to their own run directory; the unlearning
time is the old row's, since nothing was unlearned.

The probes that run models (relearning and representation, :mod:`attacks.probes`) are not run again either: their
results were kept in the cache under the probed models' keys when the row was run
(:mod:`benchmark.engine.probe_records`), and are read back, so a rescored row holds them as a fresh run's would.
A cache without them (rows run before the probes existed, or under other probe settings) leaves those scores
out of the rescored row, and its ``diagnostics.errors`` names the record that is missing.

A row's models are found under the keys it was run with: the fit settings that entered them (several devices,
another precision: :func:`~benchmark.engine.provenance.weight_settings`) are read back from the row's
``provenance["keyed"]`` (none for rows older than provenance, whose keys had none). A rescored row keeps its
old row's provenance unchanged (none where the old row had none): it describes how the models whose outputs
are scored were trained, which is what a reader compares rows by; ``diagnostics.rescored_from`` names the
old row. So a rescored row equals a fresh run's row with the new settings on the same machine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

import benchmark
from attacks import AttackOptions
from benchmark.core.errors import ConfigError
from benchmark.engine.bank import ModelBank
from benchmark.engine.cache import ModelCache
from benchmark.engine.callbacks import CELL_METRICS, attack_callbacks
from benchmark.engine.cell import Cell, build_datamodule, finish_row, preset_settings, start_row
from benchmark.engine.fitting import FitSettings
from benchmark.engine.grid import check_neighbours, run_config
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.preset import Bank, Preset, load_preset
from benchmark.report.store import MANIFEST_FILE, RESULTS_FILE, ResultStore, read_rows
from datamodules.base import UnlearningDataModule

RESCORED = ("ok", "diverged")  # a failed row has no unlearned model to re-score
# diagnostics of the unlearned module alone (TRW's similarity against its own p~, the tilt's size): no cached
# output reproduces them and no attack setting changes them, so they carry over from the old row
MODULE_DIAGNOSTICS = ("similarity_redundancy", "tilt_tv")


class RescoreError(ConfigError):
    """A run directory cannot be re-scored as asked; the message says why and what to do."""


@dataclass
class RescoreSummary:
    """What a rescore did: rows written, rows skipped (already in ``out_dir``), models trained and outputs
    computed (both 0: the cache is read-only)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    trained_models: int = 0
    computed_outputs: int = 0
    out_dir: Path | None = None


@dataclass
class RunDir:
    """One run directory to re-score: its manifest's configuration, its rescorable rows and their preset."""

    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    preset: Preset | None = None


def default_out(run_dirs: Sequence[Path], out: str | Path | None) -> Path:
    """``out``, or ``<DIR>-rescored`` for a single run directory.

    Raises:
        RescoreError: several run directories and no ``out``.
    """
    if out is not None:
        return Path(out)
    if len(run_dirs) != 1:
        raise RescoreError(f"rescoring {len(run_dirs)} run directories into one needs --out")
    return run_dirs[0].with_name(run_dirs[0].name + "-rescored")


def read_run_dir(path: Path) -> RunDir:
    """A run directory's manifest configuration and its ``ok`` and ``diverged`` rows.

    Raises:
        RescoreError: no results file, or no readable manifest (``run.json``, written by ``bench run``).
    """
    if not (path / RESULTS_FILE).exists():
        raise RescoreError(f"{path} has no {RESULTS_FILE}: not a run directory of `bench run`")
    try:
        config = json.loads((path / MANIFEST_FILE).read_text())["config"]
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise RescoreError(f"{path / MANIFEST_FILE} is missing or unreadable ({exc}): rescoring needs the "
                           "configuration its rows were run with") from None
    return RunDir(path, config, [r for r in read_rows(path / RESULTS_FILE) if r["status"] in RESCORED])


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))  # tuples as lists: compared as a manifest reads back


def run_preset(run: RunDir) -> Preset:
    """The preset ``run``'s rows were run with: loaded by name, with the rows' bank sizes (the manifest's for
    a directory without rows to re-score), checked against the manifest's settings.

    Raises:
        RescoreError: the rows mix presets or banks, or the preset's settings (or the package version)
            differ from those the directory was run with.
    """
    names = {r["preset"] for r in run.rows} | {run.config.get("preset")}
    banks = {(r["bank"]["references"], r["bank"]["shadows"]) for r in run.rows if "bank" in r}
    if len(names) != 1 or len(banks) > 1:
        raise RescoreError(f"{run.path} mixes presets {sorted(map(str, names))} or banks {sorted(banks)}: "
                           "rescoring rebuilds one preset per run directory")
    preset = load_preset(names.pop())
    bank = Bank(*banks.pop()) if banks else Bank(**run.config.get("settings", {}).get("bank", {}))
    # tuned values only for the methods whose rows were run with them (a row of `bench run --untuned` has none)
    tuned = {m: record for m, record in preset.tuned.items() if any(r["method"] == m and "tuning" in r
                                                                   for r in run.rows)}
    preset = replace(preset, bank=bank, tuned=tuned)
    recorded, current = run.config.get("settings", {}), _json(preset_settings(preset))
    differing = sorted(k for k in recorded.keys() | current.keys() if recorded.get(k) != current.get(k))
    if differing:
        raise RescoreError(f"{run.path} was run with other settings of preset {preset.name!r} than it has now "
                           f"(they differ in: {', '.join(differing)}); rescoring rebuilds each row's cell from the "
                           f"preset, so restore the settings recorded in {run.path / MANIFEST_FILE}")
    if run.config.get("version") != benchmark.__version__:
        raise RescoreError(f"{run.path} was run by version {run.config.get('version')!r}, this is "
                           f"{benchmark.__version__!r}: its unlearned models are cached under that version's keys")
    return preset


CellGroup = tuple[int, tuple[int, ...], str, str]  # seed, forget classes, keyed fit settings (sorted JSON), stacking


def cell_groups(rows: list[dict[str, Any]]) -> dict[CellGroup, list[dict[str, Any]]]:
    """Rows by cell, (seed, forget classes, the fit settings in their keys, the bank's stacking), in
    first-appearance order: one cell's rows share its bank and nulls (rows run under other device counts or
    precisions, or with a vmap-stacked bank, have other banks)."""
    groups: dict[CellGroup, list[dict[str, Any]]] = {}
    for row in rows:
        keyed = json.dumps(trained_with(row), sort_keys=True)
        groups.setdefault((row["seed"], tuple(row["forget_classes"]), keyed, stacked_with(row)), []).append(row)
    return groups


def stacked_with(row: dict[str, Any]) -> str:
    """How the row's bank was stacked (``grouped`` for rows older than the record; ``auto`` in rows written
    before it was resolved, which the cache's remembered decision then resolves again)."""
    return row.get("provenance", {}).get("stacking", "grouped")


def trained_with(row: dict[str, Any]) -> dict[str, Any]:
    """The fit settings that entered ``row``'s keys, as Trainer arguments (empty: the single-device defaults,
    and every row written before rows carried provenance)."""
    return row.get("provenance", {}).get("keyed", {})


def similarity_stand_in(row: dict[str, Any]) -> SimpleNamespace | None:
    """What the similarity callback reads off the unlearned module, rebuilt from the old row (TRW's
    ``class_similarity``); None for a method that had none."""
    values = row.get("diagnostics", {}).get("class_similarity")
    return None if values is None else SimpleNamespace(class_similarity=torch.tensor(values, dtype=torch.float64))


def rescore_row(cell: Cell, old: dict[str, Any]) -> dict[str, Any]:
    """``old``'s row scored again in ``cell`` (with the cell's attack settings) from cached outputs only.

    Args:
        cell: the rebuilt cell, on a read-only cache.
        old: the row to re-score; its status and unlearning times carry over.
    """
    name = old["method"]
    start = time.perf_counter()
    training_key = cell.training_key(name)
    row = start_row(cell, cell.probe(name), cell.key(name))
    row["status"] = old["status"]
    if "provenance" in old:
        row["provenance"] = old["provenance"]  # how the scored models were made, not how they are rescored
    else:
        del row["provenance"]  # unknown for a row older than provenance
    context = cell.context(name, training_key)
    scored = cell.unlearned_outputs(name, training_key)  # first: the entry a rescore most needs
    module = similarity_stand_in(old)
    for callback in attack_callbacks(context):
        callback.score(scored, module)
    carried = {k: v for k, v in old.get("diagnostics", {}).items() if k in MODULE_DIAGNOSTICS}
    context.diagnostics.update({k: v for k, v in carried.items() if k not in context.diagnostics})
    timings = [m.key for m in CELL_METRICS]  # measured when the model was unlearned, not now
    context.method_metrics.update({k: v for k, v in old["metrics"].items() if k in timings})
    context.oracle_metrics.update({k: v for k, v in old["oracle"].items() if k in timings})
    finish_row(row, context, start)
    row["diagnostics"]["rescored_from"] = old["config_hash"]
    return row


def _datamodule(preset: Preset, seed: int, forget_classes: tuple[int, ...], data_root: str | None,
                loaded: dict[tuple[str, int], UnlearningDataModule]) -> UnlearningDataModule:
    """The cell's DataModule; the data of a (preset, seed) is loaded once and shared by its cells."""
    if (preset.name, seed) not in loaded:
        loaded[preset.name, seed] = build_datamodule(preset, seed, forget_classes, data_root)
    return loaded[preset.name, seed].with_forget_classes(forget_classes)


def shared_manifest(runs: list[RunDir], options: AttackOptions) -> dict[str, Any]:
    """The manifest every new row shares; run directories of different presets or settings cannot share one."""
    configs = [(run.path, run_config(run.preset, options, run.config.get("trained_with"))) for run in runs]
    for path, config in configs[1:]:
        if _json(config) != _json(configs[0][1]):
            raise RescoreError(f"{configs[0][0]} and {path} were run with different presets or settings; "
                               "rescore them into separate --out directories")
    return configs[0][1]


def rescore_runs(run_dirs: Sequence[str | Path], *, out: str | Path | None = None, cache: str | Path | None = None,
                 options: AttackOptions | None = None, command: str = "",
                 data_root: str | None = None) -> RescoreSummary:
    """Re-score every ``ok`` and ``diverged`` row of ``run_dirs`` with ``options``, from cached outputs only,
    and append the new rows to ``out``.

    A row already in ``out`` (same configuration hash) is skipped, so an interrupted rescore resumes. Every
    directory is checked (manifest, preset settings, version, ``--neighbours``) before any row is scored.

    Args:
        run_dirs: run directories of ``bench run``.
        out: where the new rows go (default ``<DIR>-rescored`` for a single directory; required with several).
        cache: the model cache the runs used (default ``runs/cache``); only read.
        options: the new attack settings (default: the protocol's).
        command: the command line, recorded in every new row.
        data_root: where downloading presets keep their files (default: the preset's ``root``).

    Raises:
        RescoreError: a directory cannot be re-scored (the message says why).
        MissingCacheEntry: the cache lacks outputs a row is scored on (the message names the model).
    """
    options = options or AttackOptions()
    paths = [Path(d) for d in run_dirs]
    summary = RescoreSummary(out_dir=default_out(paths, out))
    runs = [read_run_dir(path) for path in paths]
    for run in runs:
        run.preset = run_preset(run)
    store = ResultStore(summary.out_dir)
    store.claim(shared_manifest(runs, options))
    done = store.finished_hashes()
    cache = ModelCache(cache or Path("runs") / "cache", read_only=True)
    loaded: dict[tuple[str, int], UnlearningDataModule] = {}
    cells = [(run.preset, seed, fc, keyed, stacking, rows) for run in runs
             for (seed, fc, keyed, stacking), rows in cell_groups(run.rows).items()]
    for preset, seed, fc, *_ in cells:  # every cell checked before any is scored
        check_neighbours(options, _datamodule(preset, seed, fc, data_root, loaded).num_classes, fc)
    for preset, seed, fc, keyed, stacking, rows in cells:
        dm = _datamodule(preset, seed, fc, data_root, loaded)
        fit = FitSettings(trainer_kwargs=json.loads(keyed), stacking=stacking)  # for the keys only: nothing is fitted
        cell = Cell(preset, dm, ModelBank(preset, dm, cache, fit=fit), OutputsProvider(dm, cache), options=options,
                    fit=fit, command=command)
        rescore_cell(cell, rows, store=store, done=done, summary=summary)
    summary.trained_models, summary.computed_outputs = len(cache.trained), len(cache.computed)
    return summary


def rescore_cell(cell: Cell, rows: list[dict[str, Any]], *, store: ResultStore, done: set[str],
                 summary: RescoreSummary) -> None:
    """Re-score ``rows`` of one cell into ``store``, skipping those whose new hash is in ``done``.

    Args:
        cell: the rebuilt cell (its attack settings are the new ones).
        rows: the old rows of this cell.
        store: where the new rows go.
        done: configuration hashes already in ``store``; grows with every new row.
        summary: counts rows written and skipped.
    """
    for old in rows:
        _check_split(old, cell.dm)
        if cell.key(old["method"]) in done:
            summary.skipped += 1
            continue
        row = rescore_row(cell, old)
        store.append(row)
        done.add(row["config_hash"])
        summary.rows.append(row)


def _check_split(row: dict[str, Any], dm: UnlearningDataModule) -> None:
    """The rebuilt data must be the row's: another split would score cached outputs against the wrong labels."""
    if row["split_hash"] != dm.split_hash:
        raise RescoreError(f"the data of {row['preset']} seed {row['seed']} forget {row['forget_classes']} "
                           f"differs from the one its row was run on (split hash {dm.split_hash}, the row has "
                           f"{row['split_hash']}): the dataset files changed")
