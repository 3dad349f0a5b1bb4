"""Lightning loggers for a command's fits and rows (``bench run --logger csv|tensorboard|wandb|mlflow``).

Every fit logs its per-epoch loss (``train_loss`` for bank models, ``unlearn_loss`` for unlearning, the values
the modules log today) under a name that says what the fit is, and every finished cell logs its row's metrics
once (:func:`log_name`):

    bank/<model>/<cell>            a bank model: original, in-shadow-3, oracle, reference-2, retrained-7
    unlearn/<method>/<cell>        the method unlearning the cell
    shadow/<method>-<i>/<cell>     in-shadow i unlearned with the method (U-LiRA)
    tune/<method>/trial-<n>/<cell> trial n of ``bench tune`` unlearning one tuning cell
    row/<method>/<cell>            the row's finite metrics, with its method, forget classes, seed as hyperparameters

where ``<cell>`` reads ``forget-3_seed-0``. A group (bank models or in-shadows trained in one loop) logs each
member under its own name: its modules log ``<name>/<key>`` and :class:`FitLogger` routes each key to its name.

Files go under ``logs/`` in the run directory (the study directory for ``bench tune``), through Lightning's own
classes: ``csv/<name>/version_<k>/metrics.csv`` (CSVLogger) and ``tensorboard/<name>/version_<k>/``
(TensorBoardLogger), one directory per name; ``mlflow.db`` (MLFlowLogger on a local SQLite store: MLflow 3 keeps
its ``mlruns/`` file store in maintenance mode and refuses it by default), one MLflow run per name; ``wandb/``
(WandbLogger, offline), one W&B run per command with every key prefixed by its name, because a W&B run is a
session of its own and a cell has hundreds of fits. ``MLFLOW_TRACKING_URI`` and ``WANDB_MODE=online``
send them elsewhere. Only rank 0 writes: Lightning's loggers and :class:`FitLogger` log on rank zero only.
"""

from __future__ import annotations

import importlib
import os
from argparse import Namespace
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from benchmark.core.errors import ConfigError, UnknownNameError, refuse_repeats
from benchmark.core.registry import unknown_name_message
from benchmark.report.store import finite_metrics

# each logger's modules, any one of which it runs on (nothing for CSV); its extra is named after it
NEEDS = {"csv": (), "tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}
LOGGERS = tuple(NEEDS)
PROJECT = "unlearning-bench"  # the W&B project unless WANDB_PROJECT says otherwise


def log_name(kind: str, what: str, forget_classes: Sequence[int], seed: int) -> str:
    """The name a fit or row is logged under.

    >>> log_name("shadow", "ft-2", [3, 5], 0)
    'shadow/ft-2/forget-3-5_seed-0'
    """
    return f"{kind}/{what.replace(' ', '-')}/forget-{'-'.join(map(str, forget_classes))}_seed-{seed}"


def check_installed(kind: str) -> None:
    """Refuse a logger whose package is missing, naming the extra that installs it."""
    for module in NEEDS[kind]:
        try:
            importlib.import_module(module)
            return
        except ImportError:
            continue
    if NEEDS[kind]:
        raise ConfigError(f"--logger {kind} needs the {NEEDS[kind][0]} package: "
                          f"pip install 'unlearning-bench[{kind}]' (or '.[{kind}]' in a checkout)")


@dataclass
class Sink:
    """One Lightning logger that one name writes to; ``prefix`` (the name, for a logger shared by the whole
    command) goes before every key."""

    logger: Logger
    prefix: str = ""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None) -> None:
        self.logger.log_metrics({self.prefix + k: v for k, v in metrics.items()}, step)

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        self.logger.log_hyperparams({self.prefix + k: v for k, v in params.items()})

    def done(self, status: str) -> None:
        """The name is finished: a logger of its own is finalized, a shared one only saved."""
        if self.prefix:
            self.logger.save()
        else:
            self.logger.finalize(status)


class RunLoggers:
    """The loggers one command asked for, shared by all its fits; also a context manager that closes them.

    Args:
        kinds: logger names from :data:`LOGGERS`; each package is checked here, before any work.
        root: where the files go (default: set by the grid or the study, :meth:`under`; ``logs`` otherwise).
        title: the MLflow experiment and the W&B run's name.
    """

    def __init__(self, kinds: Sequence[str], root: str | Path | None = None, title: str = PROJECT) -> None:
        self.kinds = tuple(kinds)
        for kind in self.kinds:  # the command line's choices refuse these first; this is for library callers
            if kind not in NEEDS:
                raise UnknownNameError(unknown_name_message("logger", kind, LOGGERS))
        refuse_repeats("--logger", self.kinds, "logger")
        for kind in self.kinds:
            check_installed(kind)
        self.root = Path(root) if root is not None else None
        self.title = title
        self._wandb: Logger | None = None
        self._mlflow_uri: str | None = None  # where the MLflow experiment is known to exist

    def under(self, directory: str | Path, title: str) -> RunLoggers:
        """These loggers writing to ``directory/logs`` with ``title``, unless a root was given already."""
        return self if self.root is not None else RunLoggers(self.kinds, Path(directory) / "logs", title)

    def fit_logger(self, names: str | Sequence[str]) -> FitLogger:
        """The logger of one Trainer: a fit's name, or its members' names for a group."""
        return FitLogger(self, [names] if isinstance(names, str) else names)

    def sinks(self, name: str) -> list[Sink]:
        """What ``name`` writes to, one sink per kind (created now: a directory or run of its own, or a prefix)."""
        return [self._sink(kind, name) for kind in self.kinds]

    def _sink(self, kind: str, name: str) -> Sink:
        from lightning.pytorch import loggers

        root = self.root or Path("logs")
        if kind in ("csv", "tensorboard"):
            # made first, so that finding the next version_<k> does not warn of a missing folder for every name
            (root / kind / name).mkdir(parents=True, exist_ok=True)
            if kind == "csv":
                return Sink(loggers.CSVLogger(root / kind, name=name))
            return Sink(loggers.TensorBoardLogger(root / kind, name=name, default_hp_metric=False))
        if kind == "mlflow":
            uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"
            self._mlflow_experiment(uri, root)
            return Sink(loggers.MLFlowLogger(experiment_name=self.title, run_name=name, tracking_uri=uri))
        if self._wandb is None:
            root.mkdir(parents=True, exist_ok=True)  # W&B writes its offline run under root/wandb
            self._wandb = loggers.WandbLogger(name=self.title, project=os.environ.get("WANDB_PROJECT", PROJECT),
                                              save_dir=str(root),
                                              offline=os.environ.get("WANDB_MODE", "offline") in ("offline", "dryrun"))
        return Sink(self._wandb, prefix=f"{name}/")

    def _mlflow_experiment(self, uri: str, root: Path) -> None:
        """Create the MLflow experiment once (its artifacts, of which nothing logs any, in ``root``, not the
        working directory); shards started together may race to create it."""
        if self._mlflow_uri == uri:
            return
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        try:
            if client.get_experiment_by_name(self.title) is None:
                client.create_experiment(self.title, artifact_location=(root / "mlartifacts").resolve().as_uri())
        except MlflowException:
            if client.get_experiment_by_name(self.title) is None:  # not another shard's doing
                raise
        self._mlflow_uri = uri

    @rank_zero_only
    def log_row(self, row: Mapping[str, Any]) -> None:
        """Log a finished cell's row once: its finite metrics, and what it is as hyperparameters."""
        name = log_name("row", row["method"], row["forget_classes"], row["seed"])
        about = {key: row[key] for key in ("preset", "method", "forget_classes", "seed", "status")}
        params = about | {f"hparams/{k}": v for k, v in row.get("hparams", {}).items()}
        for sink in self.sinks(name):
            sink.log_hyperparams(params)
            sink.log_metrics(finite_metrics(row["metrics"]), step=0)
            sink.done("success")

    @rank_zero_only
    def close(self) -> None:
        """Finish what stays open for the whole command (the W&B run)."""
        if self._wandb is not None:
            self._wandb.experiment.finish()
            self._wandb = None

    def __enter__(self) -> RunLoggers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FitLogger(Logger):
    """What one Trainer logs to: each key goes to the sinks of the name it belongs to.

    A single fit's module logs bare keys (``train_loss``); a group's modules log each member's keys as
    ``<name>/<key>``, and keys of no member (Lightning's ``epoch``) go with every member that logged.

    Args:
        run: the command's loggers.
        names: the fit's name, or its members' names.
    """

    def __init__(self, run: RunLoggers, names: Sequence[str]) -> None:
        super().__init__()
        self.run, self.names = run, list(names)
        self._open: dict[str, list[Sink]] = {}

    @property
    def name(self) -> str:
        return self.names[0] if len(self.names) == 1 else f"group of {len(self.names)}"

    @property
    def version(self) -> None:
        return None

    def _sinks(self, name: str) -> list[Sink]:
        if name not in self._open:
            self._open[name] = self.run.sinks(name)
        return self._open[name]

    def _split(self, metrics: Mapping[str, float]) -> dict[str, dict[str, float]]:
        if len(self.names) == 1:
            return {self.names[0]: dict(metrics)}
        own: dict[str, dict[str, float]] = {}
        shared = {}
        for key, value in metrics.items():
            name = next((n for n in self.names if key.startswith(n + "/")), None)
            if name is None:
                shared[key] = value
            else:
                own.setdefault(name, {})[key[len(name) + 1:]] = value
        return {name: values | shared for name, values in own.items()}

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for name, values in self._split(metrics).items():
            for sink in self._sinks(name):
                sink.log_metrics(values, step)

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        params = vars(params) if isinstance(params, Namespace) else dict(params)
        # tuples (forget classes) as lists: YAML files (CSV's, TensorBoard's hparams.yaml) stay plain YAML
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
        if params:  # a group's module and the classifiers have none
            for name in self.names:
                for sink in self._sinks(name):
                    sink.log_hyperparams(params)

    @rank_zero_only
    def save(self) -> None:
        for sinks in self._open.values():
            for sink in sinks:
                sink.logger.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        for sinks in self._open.values():
            for sink in sinks:
                sink.done(status)
        self._open.clear()
