"""`bench tune` end to end on a shrunk digits preset: a study runs, resumes instead of starting over, writes
its records, and a run with the tuned preset uses and records them."""

from __future__ import annotations

import json
from importlib import resources

import optuna
import pytest
import yaml

from benchmark.cli import main
from benchmark.engine.preset import load_preset


@pytest.fixture(scope="module")
def small_preset(tmp_path_factory):
    """digits with one tuning cell, two references and two-epoch training: a trial is one short fit."""
    data = yaml.safe_load((resources.files("benchmark") / "presets" / "digits.yaml").read_text())
    data["train"]["epochs"] = 2
    data["bank"] = {"references": 2, "shadows": 2}
    data["tuning"] = {"seeds": [100], "forget_classes": [[3]], "trials": 2}
    path = tmp_path_factory.mktemp("preset") / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _trials(study_dir, name: str) -> list:
    storage = f"sqlite:///{study_dir / 'study.db'}"
    return optuna.load_study(study_name=f"tiny/{name}/privacy", storage=storage).trials


def test_a_study_resumes_and_its_records_drive_a_run(small_preset, tmp_path, capsys):
    study, cache = tmp_path / "study", tmp_path / "cache"
    argv = ["tune", "--preset", str(small_preset), "--methods", "ga,original", "--study", str(study),
            "--cache", str(cache), "--quiet"]
    assert main(argv) == 0
    first = _trials(study, "ga")
    assert len(first) == 2
    assert first[0].params == {"lr": 1e-4, "epochs": 5}  # the published values come first
    assert "nothing to tune (empty search space): original" in capsys.readouterr().out

    assert main(argv) == 0  # the same command again: every trial is done, nothing runs
    assert [t.number for t in _trials(study, "ga")] == [t.number for t in first]
    assert main([*argv, "--trials", "3", "--write"]) == 0  # a larger budget adds only the missing trial
    assert len(_trials(study, "ga")) == 3

    records = yaml.safe_load((study / "tuned.yaml").read_text())["methods"]
    ga = records["ga"]
    assert ga["trials"] == 3 and ga["budget"] == 3 and ga["seeds"] == [100] and ga["forget_classes"] == [[3]]
    assert ga["objective"] == "privacy" and ga["best_value"] <= ga["published_value"]
    assert set(ga["space"]) == {"lr", "epochs"} and "bench tune" in ga["command"]
    installed = small_preset.parent / "tuned" / "tiny.yaml"
    assert yaml.safe_load(installed.read_text())["methods"]["ga"]["hparams"] == ga["hparams"]

    preset = load_preset(str(small_preset))
    assert preset.method_hparams("ga") == preset.methods["ga"] | ga["hparams"]
    assert load_preset(str(small_preset), tuned=False).method_hparams("ga") == preset.methods["ga"]
    out = tmp_path / "run"
    assert main(["run", "--preset", str(small_preset), "--methods", "ga", "--out", str(out), "--cache", str(cache),
                 "--quiet"]) == 0
    row = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert row["hparams"]["lr"] == ga["hparams"]["lr"] and row["hparams"]["epochs"] == ga["hparams"]["epochs"]
    assert row["tuning"]["best_value"] == ga["best_value"] and "space" not in row["tuning"]


def test_tuning_seeds_may_not_be_grid_seeds(tmp_path):
    data = yaml.safe_load((resources.files("benchmark") / "presets" / "digits.yaml").read_text())
    data["tuning"] = {"seeds": [0]}
    path = tmp_path / "clash.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["tune", "--preset", str(path), "--methods", "ga", "--study", str(tmp_path / "s")]) == 2
