"""Provenance in every row and in run.json; the fit settings that change trained weights in the cache keys,
and only where they differ from the single-device default (so every existing key is unchanged)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.engine.bank import ModelBank
from benchmark.engine.cell import Cell
from benchmark.engine.fitting import FitSettings
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.preset import Bank
from benchmark.engine.provenance import host_hash, provenance, source_commit, weight_settings, weights_key
from benchmark.engine.rescore import cell_groups, trained_with
from benchmark.report.store import MANIFEST_FILE, RowError, read_rows, validate_row

GOLDEN = Path(__file__).parent / "data" / "digits_cli_rows.json"
# the golden rows' command (tests/test_cli.py), one method: its bank is the one test_cli trains into the cache
RUN = ["run", "--preset", "digits", "--methods", "original", "--forget-classes", "3", "--references", "3",
       "--shadows", "2", "--quiet", "--untuned"]
# keys of the digits cell (forget 3, seed 0, untuned, bank 3/2), computed before fit settings could enter them
KEYS_BEFORE = {("original", 0): "da0b22a77419b272d289", ("retrained", 0): "ef5a69721f19ab751d73",
               ("retrained", 1): "01ec3c51443f6840a032"}
TRAINING_KEYS_BEFORE = {"ft": "6c8e1e9387746c5d736f", "ga": "74e7e0101d56049f6e7e"}
FIELDS = {"version": str, "commit": (str, type(None)), "dirty": (bool, type(None)), "python": str, "torch": str,
          "lightning": str, "cuda": (str, type(None)), "cudnn": (int, type(None)), "host": str, "threads": int,
          "accelerator": str, "devices": int, "device_names": list, "num_nodes": int, "strategy": str,
          "precision": str, "stacking": str, "keyed": dict}
CHANGED = [{"devices": 2}, {"devices": "0,1"}, {"precision": "16-mixed"}, {"precision": 16}, {"strategy": "ddp"},
           {"num_nodes": 2}, {"accumulate_grad_batches": 2}]
DEFAULTS = [{}, {"accelerator": "cpu", "devices": 1}, {"devices": "1"}, {"devices": [0]}, {"devices": "auto"},
            {"precision": "32-true"}, {"precision": 32}, {"strategy": "auto"}, {"deterministic": True}]


@pytest.fixture(scope="module")
def golden_preset(digits_preset):
    """The golden rows' preset: the hand-set digits preset with 3 references and 2 in-shadows."""
    return dataclasses.replace(digits_preset, bank=Bank(3, 2))


def _cell(preset, dm, cache, trainer_kwargs=None) -> Cell:
    fit = FitSettings(trainer_kwargs=trainer_kwargs or {})
    return Cell(preset, dm, ModelBank(preset, dm, cache, fit=fit), OutputsProvider(dm), fit=fit)


def test_provenance_has_every_field_with_its_type():
    info = provenance()
    assert info.keys() == FIELDS.keys()
    for key, kind in FIELDS.items():
        assert isinstance(info[key], kind), (key, info[key])
    assert re.fullmatch(r"[0-9a-f]{16}", info["host"]) and info["host"] == host_hash()
    assert info["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", info["commit"])
    assert (info["accelerator"], info["devices"], info["num_nodes"]) == ("cpu", 1, 1)
    assert (info["precision"], info["strategy"], info["keyed"]) == ("32-true", "auto", {})
    assert info["device_names"] and all(isinstance(n, str) for n in info["device_names"])
    json.dumps(info)  # goes into rows as it is


def test_provenance_resolves_the_trainer_arguments_without_a_trainer():
    info = provenance(FitSettings(trainer_kwargs={"accelerator": "cpu", "devices": "0,1,2", "precision": 16,
                                                  "strategy": "ddp", "num_nodes": 2}))
    assert (info["devices"], info["num_nodes"], info["precision"], info["strategy"]) == (3, 2, "16-mixed", "ddp")
    assert info["keyed"] == {"devices": 3, "num_nodes": 2, "precision": "16-mixed", "strategy": "ddp"}
    assert provenance(FitSettings(trainer_kwargs={"accelerator": "cpu", "devices": "auto"}))["devices"] == 1


def test_the_host_is_hashed_and_a_tree_that_is_no_checkout_has_no_commit(tmp_path):
    assert host_hash("my-laptop") != "my-laptop" and len(host_hash("my-laptop")) == 16
    assert source_commit(tmp_path) == (None, None)


def test_default_settings_leave_every_key_as_it_was(golden_preset, digits_dm, cache):
    """Row hashes as in the golden rows (recorded long before provenance), bank and training keys as computed
    before fit settings were keyed; explicitly default settings give the same keys as none."""
    golden = json.loads(GOLDEN.read_text())
    for kwargs in DEFAULTS:
        assert weight_settings(FitSettings(trainer_kwargs=kwargs)) == {} and weights_key(FitSettings(
            trainer_kwargs=kwargs)) == {}, kwargs
        cell = _cell(golden_preset, digits_dm, cache, kwargs)
        assert {r["method"]: cell.key(r["method"]) for r in golden} == {r["method"]: r["config_hash"] for r in golden}
        assert {m: cell.bank.key(*m) for m in KEYS_BEFORE} == KEYS_BEFORE
        assert {name: cell.training_key(name) for name in TRAINING_KEYS_BEFORE} == TRAINING_KEYS_BEFORE


@pytest.mark.parametrize("kwargs", CHANGED, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_settings_that_change_weights_give_their_own_keys(kwargs, golden_preset, digits_dm, cache):
    default, changed = _cell(golden_preset, digits_dm, cache), _cell(golden_preset, digits_dm, cache, kwargs)
    assert changed.bank.key("original", 0) != default.bank.key("original", 0)
    assert changed.bank.key("retrained", 1) != default.bank.key("retrained", 1)
    assert changed.training_key("ft") != default.training_key("ft") and changed.key("ft") != default.key("ft")
    keyed = weight_settings(changed.fit)
    # bench rescore rebuilds the keys from the copy a row's provenance keeps
    rebuilt = _cell(golden_preset, digits_dm, cache, json.loads(json.dumps(keyed)))
    assert rebuilt.bank.key("original", 0) == changed.bank.key("original", 0)
    assert rebuilt.training_key("ft") == changed.training_key("ft")


def test_threads_are_recorded_but_never_keyed(golden_preset, digits_dm, cache, monkeypatch):
    import torch

    before = _cell(golden_preset, digits_dm, cache).training_key("ft")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)
    assert provenance()["threads"] == 97
    assert _cell(golden_preset, digits_dm, cache).training_key("ft") == before


def test_rows_without_provenance_still_load_and_a_malformed_one_is_refused():
    (row,) = [r for r in json.loads(GOLDEN.read_text()) if r["method"] == "ft"]
    old = row | {"started": "2024-01-01T00:00:00", "finished": "2024-01-01T00:00:01"}
    assert "provenance" not in old and validate_row(old) is old
    assert trained_with(old) == {}
    with pytest.raises(RowError, match="provenance"):
        validate_row(old | {"provenance": "a laptop"})
    groups = cell_groups([old, old | {"provenance": {"keyed": {"devices": 2}}}])
    assert [len(rows) for rows in groups.values()] == [1, 1]  # another device count: another bank


def test_a_tiny_run_writes_provenance_into_its_rows_and_run_json(tmp_path, cache):
    out = tmp_path / "digits"
    assert main([*RUN, "--out", str(out), "--cache", str(cache.root)]) == 0
    (row,) = read_rows(out / "results.jsonl")
    assert row["provenance"].keys() == FIELDS.keys() and row["provenance"]["keyed"] == {}
    (golden,) = [r for r in json.loads(GOLDEN.read_text()) if r["method"] == "original"]
    assert row["config_hash"] == golden["config_hash"]  # provenance is in no hash
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["provenance"] == row["provenance"] and "provenance" not in manifest["config"]
    assert main([*RUN, "--out", str(out), "--cache", str(cache.root)]) == 0  # resumes: the row is found again
    assert len(read_rows(out / "results.jsonl")) == 1

    rescored = tmp_path / "rescored"
    assert main(["rescore", str(out), "--out", str(rescored), "--cache", str(cache.root), "--neighbours", "2"]) == 0
    (again,) = read_rows(rescored / "results.jsonl")
    assert again["provenance"] == row["provenance"]  # how its models were made, kept


def cached_models(cache: Path) -> set[str]:
    return {meta.stem for meta in (cache / "models").glob("*/*.json")}


@pytest.mark.slow
def test_another_precision_shares_the_cache_but_neither_its_models_nor_its_run_directory(tmp_path, capsys):
    """bf16-mixed runs into the cache of a 32-bit run: every model is its own (trained anew, under its own key),
    the rows are other rows, and the 32-bit run's directory refuses them before anything trains."""
    shared, default_out, bf16_out = tmp_path / "cache", tmp_path / "fp32", tmp_path / "bf16"
    ft = [*RUN[:4], "ft", *RUN[5:], "--cache", str(shared)]
    assert main([*ft, "--out", str(default_out)]) == 0
    models = cached_models(shared)
    capsys.readouterr()
    assert main([*ft, "--out", str(default_out), "--precision", "bf16-mixed"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "trained_with" in err and "bf16-mixed" in err, err
    assert cached_models(shared) == models  # refused before any work

    assert main([*ft, "--out", str(bf16_out), "--precision", "bf16-mixed"]) == 0
    bf16_models = cached_models(shared) - models
    assert len(bf16_models) == len(models)  # nothing reused: each model of the first run has its bf16 twin
    (fp32,), (bf16,) = read_rows(default_out / "results.jsonl"), read_rows(bf16_out / "results.jsonl")
    assert bf16["config_hash"] != fp32["config_hash"] and bf16["provenance"]["keyed"] == {"precision": "bf16-mixed"}
    assert json.loads((bf16_out / MANIFEST_FILE).read_text())["config"]["trained_with"] == {"precision": "bf16-mixed"}
    assert "trained_with" not in json.loads((default_out / MANIFEST_FILE).read_text())["config"]
    assert main([*ft, "--out", str(bf16_out), "--precision", "bf16-mixed"]) == 0  # resumes in its own directory
    assert len(read_rows(bf16_out / "results.jsonl")) == 1
