"""Scoring your own run (``benchmark.engine.score``, ``bench score``): the outputs of a real digits cell, scored
through the API, give exactly the scores of the row ``bench run`` wrote for that cell; the file format round
trips; the command prints the table and the JSON; what is missing is named."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from attacks import RMIA, AttackOptions
from attacks.outputs import Outputs
from attacks.probes import ModelProbe
from benchmark.cli import main
from benchmark.engine.bank import ModelBank
from benchmark.engine.cache import ModelCache
from benchmark.engine.callbacks import CALLBACKS, CELL_METRICS
from benchmark.engine.cell import Cell
from benchmark.engine.grid import Display, RunPaths, run_benchmark
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.preset import Bank
from benchmark.engine.score import (
    REQUIRED_SPLITS,
    ScoreInputError,
    ScoreInputs,
    model_outputs,
    score_outputs,
)
from benchmark.engine.score_files import MANIFEST, load_outputs, save_outputs
from datamodules.base import EVAL_SPLITS

METHOD = "ft"
TIMINGS = {m.key for m in CELL_METRICS}  # measured around the fit: not scores of outputs
# the probes run models (attacks/probes.py), which outputs alone cannot: bench score skips them
PROBES = {m.key for cls in CALLBACKS.values() if issubclass(cls, ModelProbe) for m in cls.metrics}
# RMIA's online variant reads the in-shadows as trained, which are no role of bench score's
IN_SHADOWS = {m.key for m in RMIA.metrics if m.key.startswith("RMIA_online")}
DIAGNOSTICS = ("neighbour_classes", "forget_destination", "ulira_scores")


@pytest.fixture(scope="module")
def cell_run(digits_preset, digits_dm, cache, tmp_path_factory):
    """``bench run``'s row of one digits cell (tests/test_cli.py's ft cell, untuned with M = 3 and S = 2: in one
    session its bank and in-shadows come from the shared cache), and that cell's cached outputs read back by role
    through a read-only cache, as ``bench rescore`` reads them."""
    preset = dataclasses.replace(digits_preset, bank=Bank(references=3, shadows=2))
    summary = run_benchmark(preset, [METHOD], forget_classes=[(3,)], seeds=[0],
                            paths=RunPaths(out=tmp_path_factory.mktemp("score-run"), cache=cache.root),
                            display=Display(progress=False))
    (row,) = summary.rows
    read_only = ModelCache(cache.root, read_only=True)
    cell = Cell(preset, digits_dm, ModelBank(preset, digits_dm, read_only), OutputsProvider(digits_dm, read_only))
    training_key = cell.training_key(METHOD)
    context = cell.context(METHOD, training_key)
    null_shadows, null_scored = context.retrain_shadows()
    inputs = ScoreInputs(target=cell.unlearned_outputs(METHOD, training_key), oracle=context.oracle,
                         references=context.references(), shadows=context.method_shadows(),
                         retrained=[*null_shadows, null_scored], forget_classes=[3], seed=0)
    return row, inputs, cell


@pytest.fixture(scope="module")
def scores(cell_run):
    return score_outputs(cell_run[1])


def test_scoring_a_cells_outputs_gives_exactly_its_rows_scores(cell_run, scores):
    row, _, _ = cell_run
    assert row["status"] == "ok"
    assert scores.metrics == {k: v for k, v in row["metrics"].items() if k not in TIMINGS | PROBES | IN_SHADOWS}
    assert scores.oracle == {k: v for k, v in row["oracle"].items() if k not in TIMINGS | PROBES | IN_SHADOWS}
    assert {"MIA_NN_null_mean", "MIA_NN_shadow", "ULiRA", "ULiRA_null_sd", "UA", "TV"} <= scores.metrics.keys()
    for key in DIAGNOSTICS:
        assert scores.diagnostics[key] == row["diagnostics"][key]
    assert "errors" not in scores.diagnostics


def test_other_attack_settings_reach_the_attacks(cell_run, scores):
    other = score_outputs(cell_run[1], options=AttackOptions(neighbours=2))
    assert len(other.diagnostics["neighbour_classes"]) == 2
    assert other.metrics["UA"] == scores.metrics["UA"] and other.metrics["MIA_NN"] != scores.metrics["MIA_NN"]


def test_each_role_needs_only_its_declared_splits(cell_run, scores):
    inputs = cell_run[1]

    def only(role: str, outputs: Outputs) -> Outputs:
        keep = REQUIRED_SPLITS[role]
        return Outputs({s: outputs.logits[s] for s in keep}, {s: outputs.labels[s] for s in keep})

    stripped = ScoreInputs(target=only("target", inputs.target), oracle=only("oracle", inputs.oracle),
                           references=[only("references", o) for o in inputs.references],
                           shadows=[only("shadows", o) for o in inputs.shadows],
                           retrained=[only("retrained", o) for o in inputs.retrained],
                           forget_classes=inputs.forget_classes)
    again = score_outputs(stripped)
    assert (again.metrics, again.oracle) == (scores.metrics, scores.oracle)


def _drop(outputs: Outputs, split: str) -> Outputs:
    return Outputs({s: t for s, t in outputs.logits.items() if s != split},
                   {s: t for s, t in outputs.labels.items() if s != split})


def _reordered(outputs: Outputs, split: str) -> Outputs:
    return Outputs(outputs.logits, outputs.labels | {split: outputs.labels[split].flip(0)})


@pytest.mark.parametrize("change, message", [
    (lambda i: {"shadows": ()}, "no 'shadows' outputs: scoring needs the S in-shadows"),
    (lambda i: {"oracle": None}, "no 'oracle' outputs"),
    (lambda i: {"references": i.references[:1]}, "references (1 given, at least 2"),
    (lambda i: {"retrained": i.retrained[:2]}, "retrained (2 given, at least 3"),
    (lambda i: {"target": _drop(i.target, "T_r")}, "target has no logits or labels on T_r"),
    (lambda i: {"references": [i.references[0], _drop(i.references[1], "T_f")]},
     "references[1] has no logits or labels on T_f: the references need D_f, T_f"),
    (lambda i: {"shadows": [i.shadows[0], _reordered(i.shadows[1], "D_r")]},
     "shadows[1]: its D_r labels differ from the target's"),
    (lambda i: {"forget_classes": [5]}, "D_f labels are outside the forget classes [5]"),
    (lambda i: {"forget_classes": [10]}, "out of range"),
])
def test_what_cannot_be_scored_is_named(cell_run, change, message):
    inputs = cell_run[1]
    with pytest.raises(ScoreInputError) as caught:
        score_outputs(dataclasses.replace(inputs, **change(inputs)))
    assert message in str(caught.value)


def test_model_outputs_are_the_suites_own_inference_pass(cell_run):
    _, _, cell = cell_run
    data = {s: cell.dm.dataset(s).tensors() for s in EVAL_SPLITS}
    model = cell.bank.oracle()[0]
    mine = model_outputs(model, data, batch_size=cell.dm.eval_batch_size)
    suites = cell.bank.outputs(OutputsProvider(cell.dm), "retrained", 0)  # computed afresh, not read from the cache
    for split in EVAL_SPLITS:
        assert torch.equal(mine.logits[split], suites.logits[split])
        assert torch.equal(mine.labels[split], suites.labels[split])
    assert not mine.logits["D_f"].requires_grad


@pytest.mark.parametrize("file_format", ["safetensors", "npz"])
def test_the_file_format_round_trips(cell_run, tmp_path, file_format):
    inputs = cell_run[1]
    manifest_path = save_outputs(tmp_path, inputs, file_format=file_format)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["forget_classes"] == [3] and manifest["num_classes"] == 10 and manifest["seed"] == 0
    assert manifest["models"]["target"] == f"target.{file_format}"
    assert len(manifest["models"]["references"]) == 3 and len(manifest["models"]["retrained"]) == 3
    loaded = load_outputs(tmp_path)
    assert (loaded.forget_classes, loaded.seed) == ((3,), 0)
    pairs = list(zip(inputs.checked().models(), loaded.models(), strict=True))
    for (role, name, original), (role2, name2, back) in pairs:
        assert (role, name) == (role2, name2)
        assert original.logits.keys() == back.logits.keys() == back.labels.keys()
        for split in original.logits:
            assert torch.equal(original.logits[split], back.logits[split])
            assert torch.equal(original.labels[split], back.labels[split])


@pytest.fixture(scope="module")
def written(cell_run, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("score-dir")
    save_outputs(directory, cell_run[1])
    return directory


def test_bench_score_prints_the_table_and_the_json(written, scores, capsys):
    capsys.readouterr()
    assert main(["score", str(written)]) == 0
    table = capsys.readouterr().out
    for label in ("UA", "MIA-NN null", "U-LiRA", "U-LiRA null sd", "Privacy gap", "nearest the oracle"):
        assert label in table
    assert f"{scores.metrics['MIA_NN']:.2f}" in table and f"{scores.oracle['MIA_NN']:.2f}" in table
    assert main(["score", str(written), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"] == scores.metrics and printed["oracle"] == scores.oracle
    assert printed["gaps"] == scores.gaps() and printed["gaps"]["metrics"]["privacy_gap"] >= 0


def _edit_manifest(directory: Path, edit) -> None:
    manifest = json.loads((directory / MANIFEST).read_text())
    edit(manifest)
    (directory / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("break_it, message", [
    (lambda d: _edit_manifest(d, lambda m: m["models"].pop("retrained")), "lists no 'retrained': scoring needs"),
    (lambda d: _edit_manifest(d, lambda m: m["models"].update(teacher="t.npz")), "unknown role 'teacher'"),
    (lambda d: (d / "shadows-1.safetensors").unlink(), "shadows-1.safetensors (shadows[1]) does not exist"),
    (lambda d: (d / "oracle.safetensors").write_bytes(b"not tensors"), "(oracle) cannot be read"),
    (lambda d: (d / MANIFEST).unlink(), "no manifest.json in"),
])
def test_bench_score_refuses_a_broken_directory_with_exit_2(written, tmp_path, capsys, break_it, message):
    import shutil

    directory = tmp_path / "outputs"
    shutil.copytree(written, directory)
    break_it(directory)
    capsys.readouterr()
    assert main(["score", str(directory)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert message.replace(" ", "") in "".join(err.split())  # rich wraps long paths at the terminal's width
