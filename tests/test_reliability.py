"""Reliability (issue 8): a run that is killed, fed a damaged artefact or given wrong input loses no
finished result, never reports a result computed from damage, and says clearly what was wrong.

The end-to-end checks run the real command line in subprocesses on the digits preset with a small
bank; the rest are unit checks on the store, the cache and the command line's argument handling.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from scale import untimed
from torch import nn

from benchmark.cli import main
from benchmark.core.atomic import append_line
from benchmark.engine.cache import ModelCache
from benchmark.engine.callbacks import declared_metrics
from benchmark.report.leaderboard import render_markdown
from benchmark.report.store import (
    MANIFEST_FILE,
    RESULTS_FILE,
    ResultStore,
    RunDirError,
    read_rows,
)

ROOT = Path(__file__).resolve().parents[1]
METHODS = "original,retrain,ft,ga,rl"
GRID = ["run", "--preset", "digits", "--methods", METHODS, "--forget-classes", "3", "--references", "2",
        "--shadows", "2", "--quiet"]
# the bank of tests/test_cli.py and tests/test_attacks_cells.py: in-process runs here share its models
SHARED_BANK = ["--forget-classes", "3", "--references", "3", "--shadows", "2", "--quiet"]
RUN_TIMEOUT_S = 900


# -- helpers ---------------------------------------------------------------------------------------------

def bench(out: Path, cache: Path) -> list[str]:
    """The grid command as a subprocess argv (a real process, so it can be killed)."""
    return [sys.executable, "-u", "-m", "benchmark.cli", *GRID, "--out", str(out), "--cache", str(cache)]


def result_lines(out: Path) -> list[str]:
    path = out / RESULTS_FILE
    return path.read_text().splitlines() if path.exists() else []


def complete_rows(out: Path) -> int:
    """Rows whose line is whole (a torn last line does not count)."""
    count = 0
    for line in result_lines(out):
        try:
            json.loads(line)
            count += 1
        except json.JSONDecodeError:
            pass
    return count


def start_then_kill(argv: list[str], ready, log: Path) -> None:
    """Start ``argv``, wait until ``ready()`` holds, then SIGKILL the whole process group."""
    with log.open("ab") as sink:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        try:
            while not ready():
                assert proc.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "the run never reached the point to kill it at"
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


def run_to_end(argv: list[str]) -> str:
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return " ".join(result.stdout.split())


def error_of(argv: list[str], capsys) -> str:
    """Run the command line in-process; it must refuse (exit 2); return its one-line error message."""
    capsys.readouterr()
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: "), err
    return err


def write_preset(path: Path, **changes) -> Path:
    """The digits preset with some top-level keys replaced, as a file of one's own."""
    data = yaml.safe_load((ROOT / "benchmark" / "presets" / "digits.yaml").read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data))
    return path


def a_row(**changes) -> dict:
    row = {"preset": "p", "dataset": "d", "model": "m", "method": "ft", "forget_classes": [3], "seed": 0,
           "status": "ok", "metrics": {"UA": 1.0}, "oracle": {"UA": 2.0}, "hparams": {}, "config_hash": "h",
           "split_hash": "s", "version": "0.1.0", "started": "t0", "finished": "t1"}
    return row | changes


# -- 1. resume after SIGKILL, and 6. determinism ----------------------------------------------------------

@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """The grid run once, uninterrupted, from an empty cache: the reference for resume and determinism."""
    root = tmp_path_factory.mktemp("clean")
    run_to_end(bench(root / "out", root / "cache"))
    return read_rows(root / "out" / RESULTS_FILE)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_rows_and_leaderboard(clean_run, tmp_path):
    """SIGKILL once while the first models train and once mid-grid, then rerun: nothing finished is
    recomputed and the rows equal an uninterrupted run's. The killed run has its own empty cache, so
    its models are really rebuilt after the kills, not read from the reference run."""
    out, cache, log = tmp_path / "out", tmp_path / "cache", tmp_path / "killed.log"
    argv = bench(out, cache)
    start_then_kill(argv, lambda: any((cache / "models").rglob("*.json")), log)  # mid-bank
    assert complete_rows(out) == 0
    start_then_kill(argv, lambda: complete_rows(out) >= 1, log)  # mid-grid
    kept = [line for line in result_lines(out) if line.strip()]
    done = complete_rows(out)
    assert 1 <= done < len(clean_run)

    summary = run_to_end(argv)
    assert f"{len(clean_run) - done} new rows ({done} cells already done" in summary
    final = read_rows(out / RESULTS_FILE)
    assert result_lines(out)[:done] == kept[:done]  # finished rows kept as written, not recomputed
    assert len({r["config_hash"] for r in final}) == len(final) == len(clean_run)  # no duplicates
    assert [untimed(r) for r in final] == [untimed(r) for r in clean_run]
    metrics = declared_metrics()
    board = lambda rows: render_markdown([untimed(r) for r in rows], metrics)  # noqa: E731
    assert board(final) == board(clean_run)


@pytest.mark.slow
def test_same_command_twice_gives_identical_rows(clean_run, tmp_path):
    """Determinism: a second run from its own empty cache reproduces every row but its timings."""
    run_to_end(bench(tmp_path / "out", tmp_path / "cache"))
    again = read_rows(tmp_path / "out" / RESULTS_FILE)
    assert [r["status"] for r in again] == ["ok"] * len(METHODS.split(","))
    assert [untimed(r) for r in again] == [untimed(r) for r in clean_run]


def test_editing_the_presets_grid_or_description_recomputes_no_finished_cell(digits_preset, digits_dm):
    """A cell's hash covers what shapes its row, not the preset's list of forget classes or seeds (an
    edit of the packaged preset once made every finished cell run again) nor where the data lives."""
    from attacks import AttackOptions
    from benchmark.core.hashing import config_hash
    from benchmark.engine.cell import cell_config, instantiate_method

    def key(preset):
        method = instantiate_method("ft", nn.Linear(1, digits_dm.num_classes), preset, digits_dm, seed=0)
        return config_hash(cell_config(preset, method, digits_dm, AttackOptions()))

    edited = dataclasses.replace(digits_preset, forget_classes=((1,), (9,)), seeds=(4, 5), description="new",
                                 root="/elsewhere")
    assert key(edited) == key(digits_preset)
    assert key(dataclasses.replace(digits_preset, unlearn_batch_size=32)) != key(digits_preset)


# -- 2. atomic writes, checksums -------------------------------------------------------------------------

def test_corrupted_result_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / RESULTS_FILE
    path.write_text(json.dumps(a_row()) + "\n" + '{"preset": "p", "metr\n' + json.dumps(a_row(method="ga")) + "\n")
    with pytest.warns(UserWarning, match=rf"{RESULTS_FILE}:2: skipping an unreadable row"):
        rows = read_rows(path)
    assert [r["method"] for r in rows] == ["ft", "ga"]


def test_row_appended_after_a_torn_line_stays_whole(tmp_path):
    """A crash mid-line (another writer, a full disk) must not swallow the next row into it."""
    path = tmp_path / RESULTS_FILE
    path.write_text(json.dumps(a_row()) + "\n" + '{"preset": "p", "met')
    append_line(path, json.dumps(a_row(method="ga")))
    with pytest.warns(UserWarning, match=":2: skipping"):
        assert [r["method"] for r in read_rows(path)] == ["ft", "ga"]


def test_a_row_that_breaks_the_schema_is_never_written(tmp_path):
    store = ResultStore(tmp_path)
    with pytest.raises(ValueError, match="finite float"):
        store.append(a_row(metrics={"UA": float("nan")}))
    assert not store.path.exists()


def _linear_entry(tmp_path: Path) -> tuple[ModelCache, dict, Path, list]:
    cache, calls = ModelCache(tmp_path), []

    def train(model):
        calls.append(1)
        return {"train_time_s": 0.1}

    config = {"role": "original", "seed": 0}
    _, meta = cache.get_or_train(config, lambda: nn.Linear(2, 2), train)
    return cache, config, next(tmp_path.rglob(f"{meta['key']}.safetensors")), (calls, train)


@pytest.mark.parametrize("damage, message", [
    (lambda pt, js: pt.write_bytes(b""), "checksum"),  # truncated to nothing
    (lambda pt, js: pt.write_bytes(bytes([pt.read_bytes()[0] ^ 1]) + pt.read_bytes()[1:]), "checksum"),  # bit flip
    (lambda pt, js: pt.unlink(), "missing"),
    (lambda pt, js: js.write_text(js.read_text()[:20]), "unreadable"),  # torn metadata
])
def test_damaged_cache_entry_is_rebuilt_with_a_warning(tmp_path, damage, message):
    """Complements tests/test_cache.py (a torn weights file): every kind of damage, then a clean entry."""
    cache, config, pt, (calls, train) = _linear_entry(tmp_path)
    damage(pt, pt.with_suffix(".json"))
    with pytest.warns(UserWarning, match=message):
        cache.get_or_train(config, lambda: nn.Linear(2, 2), train)
    assert len(calls) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.get_or_train(config, lambda: nn.Linear(2, 2), train)
    assert len(calls) == 2


def test_damaged_cached_outputs_are_not_returned(tmp_path):
    cache = ModelCache(tmp_path)
    cache.store_outputs("m", "s", {"D_f": torch.randn(3, 2)})
    blob = next((tmp_path / "outputs").rglob("*.safetensors"))
    blob.write_bytes(blob.read_bytes()[:-5])
    with pytest.warns(UserWarning, match="checksum"):
        assert cache.outputs("m", "s") is None


# -- 5. safety -------------------------------------------------------------------------------------------

class _Exploit:
    """A pickle payload that would create a file if anything unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_pickle_in_the_cache_is_never_executed(tmp_path):
    """Even with a forged checksum, a cache entry holding code is refused (not safetensors) and rebuilt."""
    cache, config, pt, (calls, train) = _linear_entry(tmp_path)
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"weight": _Exploit(marker)}, protocol=2)
    torch_style = pt.with_name("payload.pt")
    torch.save({"weight": torch.zeros(2, 2)}, torch_style)  # the payload as a plain pickle and in torch's zip
    meta_path = pt.with_suffix(".json")
    for data in (payload, _torch_zip_with(torch_style, payload)):
        pt.write_bytes(data)
        meta = json.loads(meta_path.read_text())
        meta_path.write_text(json.dumps(meta | {"sha256": hashlib.sha256(data).hexdigest()}))
        with pytest.warns(UserWarning, match="not a valid safetensors file"):
            cache.get_or_train(config, lambda: nn.Linear(2, 2), train)
        assert not marker.exists()
    assert len(calls) == 3


def _torch_zip_with(template: Path, payload: bytes) -> bytes:
    """A torch.save zip archive whose data.pkl is replaced by ``payload``."""
    import io
    import zipfile

    source, buffer = zipfile.ZipFile(template), io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            target.writestr(item, payload if item.filename.endswith("data.pkl") else source.read(item))
    return buffer.getvalue()


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """Every call as ``module.function`` text, for the attribute calls the scan cares about."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name):
                found.append((f"{owner.id}.{node.func.attr}", node))
    return found


def test_no_code_path_unpickles_anything_but_dataset_files():
    """Every torch.load passes weights_only=True; nothing else deserialises code-bearing formats. The
    one pickle reader allowed is CIFAR's official batch files under --data-root (its own format)."""
    allowed_pickle = {ROOT / "datamodules" / "torchvision_sets.py"}
    folders = ("benchmark", "methods", "attacks", "datamodules")
    sources = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    assert sources
    for path in sources:
        for name, call in _calls(ast.parse(path.read_text(), filename=str(path))):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            if name == "torch.load":
                flags = {k.arg: k.value for k in call.keywords}
                assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, \
                    f"{where}: torch.load without weights_only=True"
            if name in {"pickle.load", "pickle.loads", "pickle.Unpickler", "joblib.load", "dill.load", "dill.loads"}:
                assert path in allowed_pickle, f"{where}: {name} outside the dataset readers"
            if name == "np.load":
                pickles = [k for k in call.keywords if k.arg == "allow_pickle"
                           and not (isinstance(k.value, ast.Constant) and k.value.value is False)]
                assert not pickles, f"{where}: np.load(allow_pickle=...) other than False"


def test_entry_point_plugins_load_only_when_named(monkeypatch):
    import methods.base as base

    loaded = []

    class EntryPoint:
        def __init__(self, name):
            self.name = name

        def load(self):
            loaded.append(self.name)

    monkeypatch.setattr(base, "entry_points", lambda group: [EntryPoint("third_party_a"), EntryPoint("other")])
    base.get_method("ft")
    with pytest.raises(KeyError):
        base.get_method("third_party_a")  # loaded, but (being a stand-in) registers nothing
    assert loaded == ["third_party_a"]


# -- 4. divergence ---------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:`training_step` returned `None`")  # how a diverged fit stops early
def test_diverging_method_gets_a_diverged_row_and_the_grid_goes_on(tmp_path, cache, capsys):
    preset = write_preset(tmp_path / "digits_hot.yaml", methods={"ga": {"lr": 1.0e30, "epochs": 3},
                                                                  "ft": {"lr": 0.02, "epochs": 2}})
    code = main(["run", "--preset", str(preset), "--methods", "ga,ft", *SHARED_BANK,
                 "--out", str(tmp_path / "out"), "--cache", str(cache.root)])
    assert code == 0  # divergence is a result, not a failure of the run
    ga, ft = read_rows(tmp_path / "out" / RESULTS_FILE)
    assert (ga["method"], ga["status"]) == ("ga", "diverged") and "error" not in ga
    assert (ft["method"], ft["status"]) == ("ft", "ok") and "UA" in ft["metrics"]


# -- 3. wrong input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--forget-classes", ""], "a forget-class set is empty"),
    (["--forget-classes", "99"], "forget classes [99] are out of range: this dataset has classes 0..9"),
    (["--forget-classes", "-1"], "out of range"),
    (["--forget-classes", ",".join(map(str, range(10)))], "cannot forget every class"),
    (["--forget-classes", "3,3"], "--forget-classes 3,3: class 3 is given twice"),
    (["--forget-classes", "3,5", "5,3"], "forget-class set 3,5 is given twice"),
    (["--forget-classes", "x"], "takes class ids like '3' or '3,5'"),
    (["--seeds", "0", "0"], "--seeds: seed 0 is given twice"),
    (["--methods", "ft,ft"], "--methods: method ft is given twice"),
    (["--methods", ","], "--methods is empty"),
    (["--references", "0"], "--references 0: U-LiRA needs at least 2 references"),
    (["--shadows", "-1"], "--shadows -1: U-LiRA needs at least 2 shadows"),
    (["--neighbours", "0"], "neighbours (MIA-NN's k) must be an integer >= 1, got 0"),
    (["--forget-classes", "1,2", "--neighbours", "9"], "looks at 1 to 8 neighbour classes"),
    (["--preset", "digitz"], "unknown preset 'digitz'"),
])
def test_wrong_input_is_refused_with_a_clear_message(flags, message, tmp_path, capsys):
    """Each refusal happens before anything is trained or written (the run directory stays empty)."""
    argv = ["run", "--methods", "ft", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), *flags]
    assert message in error_of(argv, capsys)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "cache" / "models").exists()


def test_unknown_method_and_model_list_the_valid_ones(tmp_path, capsys):
    out = ["--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    err = error_of(["run", "--methods", "ft,gradient_ascnt", *out], capsys)
    assert "unknown method 'gradient_ascnt'" in err and "Known methods:" in err and "retrain" in err
    preset = write_preset(tmp_path / "typo.yaml", model="mlpp")
    err = error_of(["run", "--preset", str(preset), "--methods", "ft", *SHARED_BANK, *out], capsys)
    assert "unknown model 'mlpp'. Did you mean mlp?" in err and "Known models:" in err and "small_cnn" in err


def test_malformed_preset_file_names_key_and_line(tmp_path, capsys):
    preset = tmp_path / "bad.yaml"
    preset.write_text("dataset: digits\nmodel: mlp\ntrain: {epochs: 2}\nforget_classes: [[3]]\nseeds: [0]\n"
                      "bank: {references: 2, shaddows: 2}\n")
    err = error_of(["run", "--preset", str(preset), "--out", str(tmp_path / "out")], capsys)
    assert f"{preset}: key 'bank' (line 6)" in err and "shaddows" in err


def test_plugin_that_raises_on_import_shows_its_own_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "exploding_plugin.py").write_text("raise RuntimeError('bad weights path in my plugin')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    err = error_of(["run", "--plugin", "exploding_plugin", "--methods", "ft", "--out", str(tmp_path / "o")], capsys)
    assert "could not import plugin module 'exploding_plugin': RuntimeError: bad weights path in my plugin" in err


def test_missing_offline_dataset_says_how_to_get_it(tmp_path, capsys):
    err = error_of(["run", "--preset", "cifar10", "--methods", "ft", "--data-root", str(tmp_path / "data"),
                    "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")], capsys)
    assert str(tmp_path / "data") in err and "download: true" in err


# -- 3. a run directory of another configuration ---------------------------------------------------------

CONFIG = {"preset": "digits", "version": "0.1.0", "settings": {"bank": {"references": 2, "shadows": 2}},
          "attacks": {"neighbours": 3}}


def test_run_directory_refuses_another_configuration_but_takes_shards_of_its_own(tmp_path):
    first, shard = ResultStore(tmp_path), ResultStore(tmp_path)
    first.claim(CONFIG)
    shard.claim(copy.deepcopy(CONFIG))  # a second shard of the same grid, started together
    first.append(a_row())
    shard.append(a_row(method="ga", config_hash="h2"))
    assert json.loads((tmp_path / MANIFEST_FILE).read_text())["config"] == CONFIG
    changed = copy.deepcopy(CONFIG)
    changed["settings"]["bank"]["references"] = 8
    changed["version"] = "0.2.0"
    with pytest.raises(RunDirError) as info:
        ResultStore(tmp_path).claim(changed)
    message = str(info.value)
    assert "settings.bank.references is 8 here but 2 in the directory" in message
    assert 'version is "0.2.0" here but "0.1.0" in the directory' in message and "new --out" in message


def test_a_method_new_to_the_directory_is_growth_but_a_changed_one_is_not(tmp_path):
    """A later run may add a method (its hyperparameters are new to the manifest, and change no row there);
    changing a recorded method's hyperparameters is still another configuration."""
    config = copy.deepcopy(CONFIG)
    config["settings"]["methods"] = {"ft": {"lr": 0.01}}
    store = ResultStore(tmp_path)
    store.claim(config)
    store.append(a_row())
    grown = copy.deepcopy(config)
    grown["settings"]["methods"]["delete"] = {"lr": 0.001, "epochs": 20}
    ResultStore(tmp_path).claim(grown)  # allowed
    grown["settings"]["methods"]["ft"] = {"lr": 0.02}
    with pytest.raises(RunDirError, match="settings.methods.ft.lr is 0.02 here but 0.01"):
        ResultStore(tmp_path).claim(grown)


def test_manifest_is_written_with_the_first_row_only(tmp_path):
    """A command refused before its first row must not claim the directory for its configuration."""
    store = ResultStore(tmp_path)
    store.claim(CONFIG)
    assert not (tmp_path / MANIFEST_FILE).exists()
    ResultStore(tmp_path).claim(CONFIG | {"attacks": {"neighbours": 5}})  # nothing recorded yet: allowed


def test_rows_without_a_manifest_from_another_version_are_refused(tmp_path):
    append_line(tmp_path / RESULTS_FILE, json.dumps(a_row(preset="digits", version="0.0.9")))
    with pytest.raises(RunDirError, match="rows with version '0.0.9', this run has '0.1.0'"):
        ResultStore(tmp_path).claim(CONFIG)


def test_cli_refuses_to_mix_configurations_in_one_directory(tmp_path, capsys):
    """The manifest as ``bench run`` writes it, then the same directory with other attack settings."""
    from attacks import AttackOptions
    from benchmark.engine.grid import run_config
    from benchmark.engine.preset import Bank, load_preset

    out = tmp_path / "out"
    store = ResultStore(out)
    store.claim(run_config(dataclasses.replace(load_preset("digits"), bank=Bank(3, 2)), AttackOptions()))
    store.append(a_row(preset="digits"))
    err = error_of(["run", "--methods", "ft", *SHARED_BANK, "--neighbours", "4", "--out", str(out),
                    "--cache", str(tmp_path / "cache")], capsys)
    assert "attacks.neighbours is 4 here but 3 in the directory" in err and "Use a new --out directory" in err
    assert not (tmp_path / "cache" / "models").exists()  # refused before any training
