"""The ``cifar10_fast`` preset and its ``fast_resnet`` model, end to end on a CPU stand-in of CIFAR-10.

The stand-in (``write_cifar10``) has the real file layout (five pickled training batches and a test batch)
but 120 training and 20 test images, so a whole cell runs on a CPU; the fast test shortens every epoch count
to 1 in a copy of the preset, the slow one runs the packaged preset as it is with a bank of two and two.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import pytest
import torch
import yaml
from test_downloading_datamodules import write_cifar10

from attacks.relearning import RelearningProbe
from benchmark.cli import main
from benchmark.engine.cell import build_datamodule, instantiate_method
from benchmark.engine.models import build_model, count_parameters
from benchmark.engine.preset import load_preset, preset_names
from datamodules import DATAMODULES
from datamodules.base import check_forget_classes
from methods.base import method_names

METHODS = "original,retrain,ft"


def test_preset_parses_with_a_large_bank_and_every_method():
    preset = load_preset("cifar10_fast")
    assert "cifar10_fast" in preset_names()
    assert preset.dataset == "cifar10" and preset.model == "fast_resnet" and preset.augment
    assert preset.root == "data" and preset.download is False
    assert preset.bank.references >= 32 and preset.bank.shadows >= 32
    assert preset.train.batch_size == 512 and preset.train.epochs <= 20
    assert preset.forget_classes == load_preset("cifar10").forget_classes
    for fc in preset.forget_classes:
        check_forget_classes(fc, DATAMODULES["cifar10"].num_classes)
    # every built-in method that has hyperparameters gets this preset's own (original and retrain have none)
    assert set(preset.methods) == set(method_names()) - {"original", "retrain"}


def test_every_methods_hyperparameters_are_accepted(tmp_path):
    """Each method's constructor takes this preset's hyperparameters (a misspelt or out-of-range one fails)."""
    write_cifar10(tmp_path)
    preset = load_preset("cifar10_fast")
    dm = build_datamodule(preset, seed=0, forget_classes=(1,), data_root=str(tmp_path))
    model = build_model(preset.model, num_classes=dm.num_classes, in_channels=dm.in_channels,
                        image_size=dm.image_size)
    for name in method_names():
        method = instantiate_method(name, copy.deepcopy(model), preset, dm, seed=0)
        for key, value in preset.method_hparams(name).items():
            assert method.hparams.get(key, getattr(method, key, None)) == value, (name, key)


def test_bench_list_shows_the_preset_and_the_model(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "cifar10_fast" in out and "fast_resnet" in out


def test_fast_resnet_classifies_32x32_colour_images_and_trains():
    torch.manual_seed(0)
    model = build_model("fast_resnet", num_classes=10, in_channels=3, image_size=32)
    assert 1_000_000 < count_parameters(model) < 3_000_000
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())  # bank models may be grouped
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    features = model.features(x)
    assert features.shape == (4, model.head.in_features) and model.head.out_features == 10
    logits = model(x)
    torch.testing.assert_close(model.head(features), logits)
    torch.nn.functional.cross_entropy(logits, y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _run_cell(preset: str, tmp_path: Path) -> list[dict]:
    write_cifar10(tmp_path / "data")
    out = tmp_path / "out"
    code = main(["run", "--preset", preset, "--methods", METHODS, "--forget-classes", "1", "--seeds", "0",
                 "--references", "2", "--shadows", "2", "--data-root", str(tmp_path / "data"), "--out", str(out),
                 "--cache", str(tmp_path / "cache"), "--quiet"])
    assert code == 0
    rows = _rows(out)
    assert [r["method"] for r in rows] == METHODS.split(",")
    for r in rows:
        assert r["status"] == "ok" and r["preset"] == "cifar10_fast" and r["forget_classes"] == [1]
        assert r["bank"] == {"references": 2, "shadows": 2} and "UA" in r["metrics"]
    return rows


def test_a_cell_runs_end_to_end_on_the_stand_in(tmp_path, monkeypatch):
    """The packaged preset with the recipe's and ft's epochs cut to 1 (same file name: the rows say cifar10_fast),
    and the relearning probe to 2 steps: its 20 steps x 4 variants on six models are ~10 CPU-minutes of fast_resnet."""
    monkeypatch.setattr(RelearningProbe, "steps", 2)
    data = yaml.safe_load((resources.files("benchmark") / "presets" / "cifar10_fast.yaml").read_text())
    data["train"]["epochs"] = 1
    data["methods"]["ft"]["epochs"] = 1
    shrunk = tmp_path / "preset" / "cifar10_fast.yaml"
    shrunk.parent.mkdir()
    shrunk.write_text(yaml.safe_dump(data))
    _run_cell(str(shrunk), tmp_path)


@pytest.mark.slow
def test_the_packaged_preset_runs_end_to_end_on_the_stand_in(tmp_path):
    """The preset exactly as shipped (its full epoch counts), with the smallest bank U-LiRA takes (2 and 2)."""
    _run_cell("cifar10_fast", tmp_path)
