"""``--logger``: every fit's per-epoch loss and every row's metrics through Lightning's own loggers, named by
what they are, on rank 0 only, and without changing any weight or score."""

import csv
import json
import math
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmark.cli import main
from benchmark.core.errors import ConfigError, UnknownNameError
from benchmark.core.recipes import TrainRecipe
from benchmark.engine.fitting import FitSettings
from benchmark.engine.loggers import LOGGERS, NEEDS, RunLoggers
from benchmark.engine.stacked import fit_stack
from benchmark.engine.training import fit_classifier, seeded_build
from benchmark.report.store import WALL_CLOCK_DIAGNOSTICS

CELL = "forget-3_seed-0"
BANK = ["original", "in-shadow-1", "in-shadow-2", "oracle", "reference-1", "reference-2", "retrained-3",
        "retrained-4", "retrained-5"]  # 2 in-shadows, 2 references, the oracle's 3 further retrained models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """digits with two-epoch bank models and ft, two references and two in-shadows: every fit is short."""
    data = yaml.safe_load((resources.files("benchmark") / "presets" / "digits.yaml").read_text())
    data["train"]["epochs"] = 2
    data["methods"]["ft"]["epochs"] = 2
    data["bank"] = {"references": 2, "shadows": 2}
    data["tuning"] = {"seeds": [100], "forget_classes": [[3]], "trials": 1}
    path = tmp_path_factory.mktemp("preset") / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(preset: Path, root: Path, *loggers: str) -> Path:
    """``bench run`` of ft on one cell with a fresh cache (so the bank is trained, and logs), into ``root/out``."""
    argv = ["run", "--preset", str(preset), "--methods", "ft", "--forget-classes", "3", "--out", str(root / "out"),
            "--cache", str(root / "cache"), "--quiet", "--untuned"]
    for kind in loggers:
        argv += ["--logger", kind]
    assert main(argv) == 0
    return root / "out"


@pytest.fixture(scope="module")
def logged(tiny, tmp_path_factory) -> Path:
    return _run(tiny, tmp_path_factory.mktemp("logged"), "csv")


@pytest.fixture(scope="module")
def unlogged(tiny, tmp_path_factory) -> Path:
    return _run(tiny, tmp_path_factory.mktemp("unlogged"))


def _csv(folder: Path) -> list[dict[str, str]]:
    """The rows of the one ``metrics.csv`` a name has (its only version)."""
    (path,) = folder.glob("version_*/metrics.csv")
    with path.open() as file:
        return list(csv.DictReader(file))


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_every_fit_logs_its_per_epoch_loss_under_its_name(logged):
    root = logged / "logs" / "csv"
    names = {str(p.parent.parent.relative_to(root)) for p in root.glob("**/version_*/metrics.csv")}
    fits = {f"bank/{m}/{CELL}": "train_loss" for m in BANK} | {f"unlearn/ft/{CELL}": "unlearn_loss"} | {
        f"shadow/ft-{i}/{CELL}": "unlearn_loss" for i in (1, 2)}
    assert names == set(fits) | {f"row/ft/{CELL}"}
    for name, loss in fits.items():
        rows = _csv(root / name)
        assert [r["epoch"] for r in rows] == ["0", "1"], name  # one value per epoch
        assert all(math.isfinite(float(r[loss])) for r in rows), name
    # the bank's groups and the in-shadows' group logged each member apart (no member's key in another's file)
    assert set(_csv(root / f"bank/reference-2/{CELL}")[0]) == {"epoch", "step", "train_loss"}
    assert _rows(logged)[0]["diagnostics"]["shadow_fits"] == "grouped"


def test_a_row_logs_its_finite_metrics_once_with_what_it_is(logged):
    folder = logged / "logs" / "csv" / "row" / "ft" / CELL
    (logged_row,) = _csv(folder)
    (row,) = _rows(logged)
    metrics = {k: float(v) for k, v in logged_row.items() if k != "step"}
    assert metrics == pytest.approx(row["metrics"]) and metrics.keys() == row["metrics"].keys()
    (hparams,) = folder.glob("version_*/hparams.yaml")
    about = yaml.safe_load(hparams.read_text())
    assert about["method"] == "ft" and about["forget_classes"] == [3] and about["seed"] == 0
    assert about["preset"] == "tiny" and about["hparams/epochs"] == 2


def _stable(row: dict) -> dict:
    """A row without what differs between two runs on one machine (dates, paths, wall times, provenance)."""
    row = {k: v for k, v in row.items() if k not in ("started", "finished", "command", "provenance")}
    for part in ("metrics", "oracle"):
        row[part] = {k: v for k, v in row[part].items() if k not in ("time_s", "time_ratio")}
    row["diagnostics"] = {k: v for k, v in row["diagnostics"].items() if k not in WALL_CLOCK_DIAGNOSTICS}
    return row


def test_logging_changes_no_row_and_no_logger_writes_nothing(logged, unlogged):
    assert [_stable(r) for r in _rows(logged)] == [_stable(r) for r in _rows(unlogged)]
    assert not (unlogged / "logs").exists()
    assert FitSettings().trainer(1).loggers == []  # the default: logger=False, as before loggers existed


def test_tuning_trials_log_under_their_trial_number(tiny, tmp_path):
    study = tmp_path / "study"
    assert main(["tune", "--preset", str(tiny), "--methods", "ga", "--trials", "1", "--study", str(study),
                 "--cache", str(tmp_path / "cache"), "--quiet", "--logger", "csv"]) == 0
    rows = _csv(study / "logs" / "csv" / "tune" / "ga" / "trial-0" / "forget-3_seed-100")
    assert rows and all(math.isfinite(float(r["unlearn_loss"])) for r in rows)
    assert (study / "logs" / "csv" / "bank" / "oracle" / "forget-3_seed-100").is_dir()  # the tuning cell's bank


def _member_loaders() -> list[DataLoader]:
    """Two members' own shuffled loaders over one small split, each with its own seeded order."""
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(96, 8, generator=generator), torch.randint(0, 3, (96,), generator=generator))
    return [DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(k)) for k in (1, 2)]


def test_a_grouped_member_logs_what_its_own_fit_logs_and_logging_changes_no_weight(tmp_path):
    recipe = TrainRecipe(lr=0.1, epochs=3, batch_size=16, scheduler="cosine")
    build = [seeded_build(lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)), k) for k in (1, 2)]
    names = ["bank/a/forget-3_seed-0", "bank/b/forget-3_seed-0"]
    alone_fit, group_fit = (FitSettings(loggers=RunLoggers(["csv"], root=tmp_path / p)) for p in ("alone", "group"))
    alone = [b() for b in build]
    for model, loader, name in zip(alone, _member_loaders(), names, strict=True):
        fit_classifier(model, loader, recipe, seed=0, fit=alone_fit, log_as=name)
    grouped, unlogged = [b() for b in build], [b() for b in build]
    fit_stack(grouped, _member_loaders(), recipe, fit=group_fit, labels=names)
    fit_stack(unlogged, _member_loaders(), recipe, labels=names)  # no loggers: the labels log nothing
    for a, g, u in zip(alone, grouped, unlogged, strict=True):
        for pa, pg, pu in zip(a.parameters(), g.parameters(), u.parameters(), strict=True):
            assert torch.equal(pa, pg) and torch.equal(pg, pu)
    for name in names:
        assert _csv(tmp_path / "group" / "csv" / name) == _csv(tmp_path / "alone" / "csv" / name)


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    row = {"preset": "p", "method": "ft", "forget_classes": [3], "seed": 0, "status": "ok", "hparams": {},
           "metrics": {"UA": 1.0, "TV": float("nan")}}

    def log(root: Path) -> None:
        run = RunLoggers(["csv"], root=root)
        fit = run.fit_logger("unlearn/ft/forget-3_seed-0")
        fit.log_hyperparams({"lr": 0.1})
        fit.log_metrics({"unlearn_loss": 0.5, "epoch": 0}, step=3)
        fit.finalize("success")
        run.log_row(row)

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    log(tmp_path / "rank1")
    assert not (tmp_path / "rank1").exists()
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    log(tmp_path / "rank0")
    assert _csv(tmp_path / "rank0" / "csv" / "unlearn" / "ft" / CELL) == [{"unlearn_loss": "0.5", "epoch": "0",
                                                                          "step": "3"}]
    assert _csv(tmp_path / "rank0" / "csv" / "row" / "ft" / CELL) == [{"UA": "1.0", "step": "0"}]  # NaN left out


def test_an_unknown_logger_is_a_usage_error_listing_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--logger", "neptune"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'neptune'" in err and all(name in err for name in LOGGERS)
    with pytest.raises(UnknownNameError, match="Did you mean tensorboard"):  # from Python, close matches first
        RunLoggers(["tensorbord"])
    with pytest.raises(ConfigError, match="logger csv is given twice"):
        RunLoggers(["csv", "csv"])


@pytest.mark.parametrize("kind", [k for k in LOGGERS if NEEDS[k]])
def test_a_missing_package_is_a_one_line_error_naming_its_extra(kind, tmp_path, monkeypatch, capsys):
    for module in NEEDS[kind]:
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    argv = ["run", "--methods", "ft", "--logger", "csv", "--logger", kind, "--out", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert f"pip install 'unlearning-bench[{kind}]'" in " ".join(err.split())
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()  # refused before any work


def _tensorboard_scalars(run: RunLoggers, root: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for folder in {p.parent for p in root.glob("tensorboard/**/events.out.tfevents.*")}:
        events = EventAccumulator(str(folder))
        events.Reload()
        name = str(folder.parent.relative_to(root / "tensorboard"))
        tags |= {f"{name}/{tag}" for tag in events.Tags()["scalars"]}
    return tags


def _mlflow_scalars(run: RunLoggers, root: Path) -> set[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("check").experiment_id])
    return {f"{run.info.run_name}/{key}" for run in runs for key in run.data.metrics}


def _wandb_scalars(run: RunLoggers, root: Path) -> set[str]:
    assert list(root.glob("wandb/offline-run-*/run-*.wandb"))  # offline: the run is a file to sync later
    return set(run._wandb.experiment.summary.keys())  # the offline file is binary: read the run's own summary


@pytest.mark.parametrize("kind, read", [("tensorboard", _tensorboard_scalars), ("mlflow", _mlflow_scalars),
                                        ("wandb", _wandb_scalars)])
def test_each_optional_logger_writes_each_name(kind, read, tmp_path, monkeypatch):
    pytest.importorskip(NEEDS[kind][0])
    for name in ("WANDB_MODE", "MLFLOW_TRACKING_URI"):  # offline and local, as by default
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = RunLoggers([kind]).under(tmp_path, "check")
    fit = FitSettings(loggers=run)
    loader = _member_loaders()[0]
    with fit.logging():
        fit_classifier(nn.Linear(8, 3), loader, TrainRecipe(epochs=2, batch_size=16), seed=0, fit=fit,
                       log_as=f"bank/original/{CELL}")
        run.log_row({"preset": "p", "method": "ft", "forget_classes": [3], "seed": 0, "status": "ok",
                     "hparams": {"lr": 0.1}, "metrics": {"UA": 1.0}})
        assert {f"bank/original/{CELL}/train_loss", f"row/ft/{CELL}/UA"} <= read(run, tmp_path / "logs")
