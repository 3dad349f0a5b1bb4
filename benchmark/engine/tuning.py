"""``bench tune``: every method tuned the same way, on cells the leaderboard never sees (docs/protocol.md 8).

For each method, one Optuna study (TPE with a fixed seed) over the method's declared search space
(:mod:`methods.search`), with the published values as the first trial and the same budget for every method.
A trial unlearns every tuning cell (the preset's ``tuning`` seeds x forget classes, each with its own original,
oracle and references from the model cache) and scores the model on V alone with
:mod:`attacks.objective`; the trial's value is the mean over cells. After each cell the running mean is
reported, and a median pruner stops trials whose running mean is worse than the median of earlier trials at
the same cell (sound here: every trial visits the cells in one order, so running means compare like with like).

Studies live in one SQLite file per study directory: an interrupted study resumes where it stopped (the same
command runs only the trials still missing), and several processes may share one study.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from attacks.objective import OBJECTIVES, PARTS, objective_parts, objective_value
from attacks.outputs import Outputs
from benchmark.core.errors import ConfigError
from benchmark.core.hashing import derive_seed
from benchmark.core.quiet import quiet_lightning
from benchmark.engine.bank import ModelBank
from benchmark.engine.cache import ModelCache
from benchmark.engine.cell import Cell, build_datamodule, instantiate_method, unlearn
from benchmark.engine.fitting import DEFAULT_FIT, FitSettings
from benchmark.engine.models import predict_logits
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.preset import Bank, Preset, tuned_path
from methods.base import get_method
from methods.search import published_values, sample

SAMPLER_SEED = 0
SPLIT = "V"  # the tuning objective's split: the leaderboard's test splits are never scored while tuning
HEARTBEAT_S = 20  # a trial without a heartbeat for 3 of these belongs to a killed process and is failed
DIVERGED = 4.0  # the objective's largest value (each of its four parts is at most 1): a diverged trial's score


@dataclasses.dataclass
class TuningCells:
    """The tuning cells of one preset: (seed, forget classes) -> a :class:`Cell` without attack settings,
    built on first use, so a study that resumes with every trial done trains nothing."""

    preset: Preset
    cache: ModelCache
    fit: FitSettings = DEFAULT_FIT
    data_root: str | None = None
    _cells: dict[tuple[int, tuple[int, ...]], Cell] = dataclasses.field(default_factory=dict)

    def keys(self) -> list[tuple[int, tuple[int, ...]]]:
        return [(seed, classes) for seed in self.preset.tuning.seeds for classes in self.preset.tuning.forget_classes]

    def cell(self, seed: int, classes: tuple[int, ...]) -> Cell:
        if (seed, classes) not in self._cells:
            self._cells[seed, classes] = self._build(seed, classes)
        return self._cells[seed, classes]

    def _build(self, seed: int, classes: tuple[int, ...]) -> Cell:
        # no in-shadows: the objective reads the original, the oracle and the references only (bank keys do not
        # depend on the bank's sizes, so these are the very models a grid on these seeds would use)
        preset = dataclasses.replace(self.preset, bank=Bank(references=self.preset.bank.references, shadows=0))
        dm = build_datamodule(preset, seed, classes, data_root=self.data_root)
        bank = ModelBank(preset, dm, self.cache, fit=self.fit)
        bank.train_missing()  # the references in groups (the oracle alone, as in a grid)
        return Cell(preset, dm, bank, OutputsProvider(dm, self.cache), fit=self.fit)

    def score(self, name: str, hparams: dict[str, Any], seed: int, classes: tuple[int, ...],
              objective: str, trial: int | None = None) -> tuple[float, dict[str, float]]:
        """Unlearn method ``name`` with ``hparams`` in one tuning cell; its objective value and parts. ``trial``:
        the study's trial number, which names the fit in the run's loggers (None logs nothing)."""
        cell = self.cell(seed, classes)
        preset = dataclasses.replace(cell.preset, methods=cell.preset.methods | {name: hparams}, tuned={})
        method = instantiate_method(name, copy.deepcopy(cell.original), preset, cell.dm,
                                    seed=derive_seed(seed, "method", name, 0))
        unlearn(method, cell.dm, fit=self.fit, description=f"tune {name} forget {list(classes)} seed {seed}",
                log_as=None if trial is None else cell.log_name("tune", f"{name}/trial-{trial}"))
        images, labels = cell.dm.dataset(SPLIT).tensors()  # V alone: the objective reads nothing else
        outputs = Outputs(logits={SPLIT: predict_logits(method.model, images, batch_size=cell.dm.eval_batch_size)},
                          labels={SPLIT: labels})
        if method.diverged or not outputs.finite():
            return DIVERGED, {}
        oracle = cell.bank.outputs(cell.outputs, "retrained", 0)
        parts = objective_parts(outputs, oracle, cell.bank.reference_outputs(cell.outputs), classes, split=SPLIT)
        return objective_value(parts, objective), parts


def _optuna():
    try:
        import optuna
    except ImportError as exc:  # a dependency of the project; missing only in a broken environment
        raise ConfigError("bench tune needs optuna: pip install optuna (a dependency in pyproject.toml)") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats (how a killed process's trials are found) are marked experimental; they are what resume needs
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def study_name(preset: Preset, method: str, objective: str) -> str:
    return f"{preset.name}/{method}/{objective}"


def tune_method(cells: TuningCells, name: str, *, trials: int, objective: str, storage,
                on_trial: Callable[[str, int, float], None] = lambda name, number, value: None) -> dict[str, Any]:
    """Run method ``name``'s study up to ``trials`` finished trials (resuming it); return its tuning record.

    Args:
        cells: the preset's tuning cells.
        name: the method.
        trials: the budget: finished trials (complete or pruned) the study ends with.
        objective: ``privacy`` or ``utility`` (:mod:`attacks.objective`).
        storage: the Optuna storage (SQLite, with heartbeats).
        on_trial: called with (method, trial number, value) after each trial.
    """
    optuna = _optuna()
    cls = get_method(name)
    space = cls.search_space
    if not space:
        return {}
    study = optuna.create_study(study_name=study_name(cells.preset, name, objective), storage=storage,
                                direction="minimize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=SAMPLER_SEED),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0))
    published = published_values(space)
    optuna.storages.fail_stale_trials(study)  # trials of a killed process: no heartbeat for a while
    live = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.WAITING,
            optuna.trial.TrialState.RUNNING)
    if not any(t.state in live and t.params == published for t in study.trials):
        study.enqueue_trial(published)  # the published values come first (again, if an interruption lost them)
    base = cells.preset.method_hparams(name)
    keys = cells.keys()

    def run(trial) -> float:
        hparams = base | sample(space, trial)
        total = 0.0
        for step, (seed, classes) in enumerate(keys):
            value, parts = cells.score(name, hparams, seed, classes, objective, trial=trial.number)
            total += value
            for part, v in parts.items():
                trial.set_user_attr(f"{part}/{seed}/{'-'.join(map(str, classes))}", v)
            trial.report(total / (step + 1), step)
            if trial.should_prune():
                on_trial(name, trial.number, math.nan)
                raise optuna.TrialPruned()
        on_trial(name, trial.number, total / len(keys))
        return total / len(keys)

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = sum(t.state in finished for t in study.trials)
    if done < trials:  # the callback stops every process sharing the study once the budget is reached
        study.optimize(run, n_trials=trials - done,
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=finished)])
    return tuning_record(study, cells.preset, name, objective, space, budget=trials)


def tuning_record(study, preset: Preset, name: str, objective: str, space, *, budget: int) -> dict[str, Any]:
    """What a tuned preset records for one method: the chosen values and everything that produced them."""
    best = study.best_trial
    published = published_values(space)
    first = next((t for t in study.trials if t.params == published and t.value is not None), None)
    return {
        "hparams": dict(best.params),
        "objective": objective, "objective_parts": list(PARTS[objective]),
        "best_value": round(float(best.value), 6),
        "published_value": None if first is None else round(float(first.value), 6),
        "best_trial": best.number, "budget": budget,
        "trials": sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials),
        "sampler": f"TPE(seed={SAMPLER_SEED})",
        "seeds": list(preset.tuning.seeds), "forget_classes": [list(c) for c in preset.tuning.forget_classes],
        "space": {k: p.describe() for k, p in space.items()},
        "forgets_and_keeps_utility": _feasible(study),
    }


def _feasible(study) -> dict[str, Any]:
    """How many complete trials forgot (V forget-sample accuracy within 10 points of the oracle's, i.e. UA
    >= 90 where the oracle scores 0) while keeping utility (V retained accuracy within 10 points), on average
    over the tuning cells; and the best such trial. A method none of whose trials does is recorded as such."""
    def mean(trial, part: str) -> float:
        values = [v for k, v in trial.user_attrs.items() if k.startswith(f"{part}/")]
        return sum(values) / len(values) if values else math.inf

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    feasible = [t for t in complete if mean(t, "forget_gap") <= 0.1 and mean(t, "utility_gap") <= 0.1]
    best = min(feasible, key=lambda t: t.value, default=None)
    return {"trials": len(feasible), "of": len(complete), "best_trial": None if best is None else best.number}


def run_tuning(preset: Preset, methods: Sequence[str], *, trials: int | None = None, objective: str = "privacy",
               study_dir: str | Path, cache: str | Path, fit: FitSettings = DEFAULT_FIT, data_root: str | None = None,
               command: str = "", on_trial: Callable[[str, int, float], None] = lambda n, i, v: None,
               ) -> dict[str, dict[str, Any]]:
    """Tune ``methods`` on ``preset``'s tuning cells; write ``<study_dir>/tuned.yaml``; return the records.

    Args:
        preset: the preset (loaded without its tuned values: a study starts from the hand-set ones).
        methods: method names.
        trials: the per-method budget (default: the preset's ``tuning.trials``).
        objective: ``privacy`` (default) or ``utility``.
        study_dir: where the SQLite study and the records are kept (resumable).
        cache: the model cache of the tuning cells' banks.
        fit: Trainer settings (and loggers: their files go to ``<study_dir>/logs``).
        data_root: where downloading presets keep their files.
        command: the command line, recorded with each record.
        on_trial: called after each trial.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    trials = preset.tuning.trials if trials is None else trials
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    folder = Path(study_dir)
    folder.mkdir(parents=True, exist_ok=True)
    storage = _optuna().storages.RDBStorage(f"sqlite:///{(folder / 'study.db').resolve()}",
                                            heartbeat_interval=HEARTBEAT_S, grace_period=3 * HEARTBEAT_S)
    fit = fit.logging_under(folder, f"tune-{preset.name}")  # logs/ beside the study
    cells = TuningCells(preset, ModelCache(cache), fit=fit, data_root=data_root)
    records = {}
    with quiet_lightning(), fit.logging():
        for name in methods:
            record = tune_method(cells, name, trials=trials, objective=objective, storage=storage, on_trial=on_trial)
            if record:
                records[name] = record | {"command": command, "tuned": _now()}
                write_records(folder / "tuned.yaml", preset, {name: records[name]})  # each as soon as it is done
    return records


def write_records(path: Path, preset: Preset, records: dict[str, dict[str, Any]]) -> None:
    """Merge ``records`` into the tuning-records file at ``path`` (other methods' records are kept)."""
    existing = yaml.safe_load(path.read_text()) if path.exists() else None
    methods = dict((existing or {}).get("methods", {})) | records
    header = (f"# Tuned hyperparameters of preset {preset.name}, written by `bench tune` (docs/protocol.md 8).\n"
              "# Each record: the chosen values, the objective and budget, the tuning seeds and classes (never the\n"
              "# leaderboard's), the best and the published values' objective, the space and the command.\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + yaml.safe_dump({"preset": preset.name, "methods": methods}, sort_keys=False))
    tmp.replace(path)


def install_records(preset: Preset, name_or_path: str, study_dir: str | Path) -> Path:
    """Copy a study's records into the preset's tuned file (``tuned/<name>.yaml`` beside the preset file:
    ``benchmark/presets/tuned/<name>.yaml`` for a packaged preset).

    Args:
        preset: the loaded preset.
        name_or_path: how the preset was named on the command line (a packaged name or a YAML path).
        study_dir: the study directory whose ``tuned.yaml`` is installed.
    """
    source = Path(study_dir) / "tuned.yaml"
    records = (yaml.safe_load(source.read_text()) or {}).get("methods", {})
    target = tuned_path(name_or_path)
    write_records(target, preset, records)
    return target


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
