"""``bench rescore``: finished rows scored again with other attack settings from cached outputs alone, equal to
a fresh run's rows with those settings; and a changed attack setting unlearns no in-shadow again."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import benchmark.engine.cell as cell_module
import benchmark.engine.grid as grid_module
import benchmark.engine.rescore as rescore_module
from benchmark.cli import main
from benchmark.engine.cache import ModelCache

RUN = ["run", "--preset", "digits", "--methods", "ft,rl,trw", "--forget-classes", "3", "--references", "2",
       "--shadows", "2", "--quiet"]
NEW_OPTIONS = ["--neighbours", "2", "--nn-feature", "prob", "--svc-c", "1", "--svc-gamma", "scale"]
WALL_CLOCK = ("started", "finished", "command")
TIMINGS = ("time_s", "time_ratio")
RESCORE_ONLY = ("cell_s", "rescored_from")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, cache) -> Path:
    """Run directory A: three methods with the default attack settings, into the session's cache."""
    root = tmp_path_factory.mktemp("rescore")
    assert main([*RUN, "--out", str(root / "A"), "--cache", str(cache.root)]) == 0
    return root


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def _without_wall_clock(row: dict) -> dict:
    row = {k: v for k, v in row.items() if k not in WALL_CLOCK}
    for part in ("metrics", "oracle"):
        row[part] = {k: v for k, v in row[part].items() if k not in TIMINGS}
    row["diagnostics"] = {k: v for k, v in row["diagnostics"].items() if k not in RESCORE_ONLY}
    return row


def _spy_caches(monkeypatch, module) -> list[ModelCache]:
    """Every ModelCache ``module`` makes from now on."""
    made: list[ModelCache] = []

    class Spy(ModelCache):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(module, "ModelCache", Spy)
    return made


def test_rescored_rows_equal_a_fresh_run_with_the_new_settings_and_nothing_is_trained(first_run, cache, monkeypatch,
                                                                                     capsys):
    root = first_run
    caches = _spy_caches(monkeypatch, rescore_module)
    rescore = ["rescore", str(root / "A"), "--out", str(root / "R"), "--cache", str(cache.root), *NEW_OPTIONS]
    capsys.readouterr()
    assert main(rescore) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "3 rows rescored, 0 rows skipped" in out and "0 models trained" in out
    (read_only,) = caches
    assert read_only.read_only and read_only.trained == [] and read_only.computed == []

    assert main([*RUN, *NEW_OPTIONS, "--out", str(root / "F"), "--cache", str(cache.root)]) == 0
    old, rescored, fresh = _rows(root / "A"), _rows(root / "R"), _rows(root / "F")
    assert [_without_wall_clock(r) for r in rescored] == [_without_wall_clock(r) for r in fresh]
    assert [r["diagnostics"]["rescored_from"] for r in rescored] == [r["config_hash"] for r in old]
    assert {r["config_hash"] for r in rescored}.isdisjoint(r["config_hash"] for r in old)
    assert [r["metrics"]["time_s"] for r in rescored] == [r["metrics"]["time_s"] for r in old]  # not re-measured
    assert all(r["command"].startswith("bench rescore ") for r in rescored)

    assert main(rescore) == 0  # resumes: every row is there already
    assert "0 rows rescored, 3 rows skipped" in " ".join(capsys.readouterr().out.split())
    assert len(_rows(root / "R")) == 3


def test_a_rescore_whose_cache_lacks_the_unlearned_outputs_names_them_and_exits_2(first_run, cache, tmp_path,
                                                                                 capsys):
    partial = tmp_path / "cache"
    shutil.copytree(cache.root, partial, copy_function=os.link, ignore=shutil.ignore_patterns("locks"))
    unlearned_ft = [path for path in (partial / "outputs").rglob("*.json")
                    if json.loads(path.read_text())["about"] == {"role": "unlearned", "method": "ft", "index": 0,
                                                                  "preset": "digits", "seed": 0, "forget_classes": [3]}]
    assert unlearned_ft  # every entry says what it holds
    for path in unlearned_ft:
        path.unlink()
    capsys.readouterr()
    code = main(["rescore", str(first_run / "A"), "--out", str(tmp_path / "R"), "--cache", str(partial),
                 *NEW_OPTIONS])
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "has no outputs of the unlearned model (method ft, index 0, preset digits, seed 0" in err
    assert str(partial) in err and "only reads the cache" in err
    assert not (tmp_path / "R" / "results.jsonl").exists()


def test_changing_an_attack_setting_unlearns_no_in_shadow_again(first_run, cache, monkeypatch, tmp_path):
    fits: list[str] = []
    unlearn = cell_module.unlearn

    def recording_unlearn(method, dm, **kwargs):
        fits.append(kwargs["description"])
        return unlearn(method, dm, **kwargs)

    monkeypatch.setattr(cell_module, "unlearn", recording_unlearn)
    caches = _spy_caches(monkeypatch, grid_module)
    argv = [*RUN, "--nn-feature", "renorm", "--out", str(tmp_path / "G"), "--cache", str(cache.root)]
    argv[argv.index("ft,rl,trw")] = "ft"
    assert main(argv) == 0
    assert fits == ["ft forget [3]"]  # the cell's own fit; its in-shadows' come from the cache
    (grid_cache,) = caches
    assert grid_cache.trained == [] and grid_cache.computed == []  # every output, the unlearned model's too


def test_a_run_directory_whose_preset_settings_changed_is_refused(first_run, tmp_path, capsys):
    edited = tmp_path / "A"
    shutil.copytree(first_run / "A", edited)
    manifest = json.loads((edited / "run.json").read_text())
    manifest["config"]["settings"]["unlearn_batch_size"] = 32
    (edited / "run.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["rescore", str(edited), "--cache", str(tmp_path / "unused")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "other settings of preset 'digits'" in err and "unlearn_batch_size" in err
    assert main(["rescore", str(edited), str(first_run / "A")]) == 2
    assert "needs --out" in capsys.readouterr().err


@pytest.mark.slow
def test_a_vmap_stacked_run_is_rescored_from_its_own_models(tmp_path, capsys):
    """vmap-stacked bank models live under their own keys; the row records the stacking, so a rescore finds them
    (and trains nothing) and equals a fresh vmap run with the new settings."""
    cache = ModelCache(tmp_path / "cache")
    vmap = ["--methods", "ft", "--stacking", "vmap", "--cache", str(cache.root)]
    assert main([*RUN, *vmap, "--out", str(tmp_path / "A")]) == 0
    (row,) = _rows(tmp_path / "A")
    assert row["provenance"]["stacking"] == "vmap"
    capsys.readouterr()
    assert main(["rescore", str(tmp_path / "A"), "--out", str(tmp_path / "R"), "--cache", str(cache.root),
                 *NEW_OPTIONS]) == 0
    assert "0 models trained" in " ".join(capsys.readouterr().out.split())
    assert main([*RUN, *vmap, *NEW_OPTIONS, "--out", str(tmp_path / "F")]) == 0
    assert [_without_wall_clock(r) for r in _rows(tmp_path / "R")] == [_without_wall_clock(r)
                                                                        for r in _rows(tmp_path / "F")]
