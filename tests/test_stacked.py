"""Training bank models as one group gives the models sequential fits give (benchmark.engine.stacked)."""

import copy
import dataclasses

import pytest
import torch

from benchmark.core.hashing import derive_seed
from benchmark.engine.bank import ModelBank
from benchmark.engine.cache import ModelCache
from benchmark.engine.fitting import FitSettings
from benchmark.engine.models import build_model, predict_logits
from benchmark.engine.preset import Bank
from benchmark.engine.stacked import fit_stack, stack_refusal
from benchmark.engine.training import fit_classifier, seeded_build


@pytest.fixture(scope="module")
def short(digits_preset):
    """The digits preset with a 3-epoch recipe and a bank of 2 references and 2 shadows."""
    return dataclasses.replace(digits_preset, train=dataclasses.replace(digits_preset.train, epochs=3),
                               bank=Bank(references=2, shadows=2))


def _pairs(bank, members, vectorise=False):
    """Each member fitted alone (the suite's sequential path) and all of them as one group (or stack)."""
    seeds = [derive_seed(bank.dm.seed, *m) for m in members]
    alone = [seeded_build(bank.new_model, s)() for s in seeds]
    for model, member, seed in zip(alone, members, seeds):
        fit_classifier(model, bank.member_loader(*member), bank.preset.train, seed=seed)
    grouped = [seeded_build(bank.new_model, s)() for s in seeds]
    fit_stack(grouped, [bank.member_loader(*m) for m in members], bank.preset.train, vectorise=vectorise)
    return alone, grouped


@pytest.mark.parametrize("augment", [False, True], ids=["plain", "augmented"])
def test_group_equals_sequential_fits_weights_and_outputs(short, digits_dm, tmp_path, augment):
    """Augmented too: each member's crops come from its own loader's generator, as in its own fit."""
    dm = copy.copy(digits_dm)
    dm.augment = augment
    bank = ModelBank(short, dm, ModelCache(tmp_path))
    alone, grouped = _pairs(bank, [("original", 1), ("original", 2), ("original", 3)])
    atol = 0.0
    images, _ = digits_dm.dataset("T").tensors()
    for a, g in zip(alone, grouped):
        for name, value in a.state_dict().items():
            torch.testing.assert_close(g.state_dict()[name], value, rtol=0, atol=atol)
        torch.testing.assert_close(predict_logits(g, images), predict_logits(a, images), rtol=0, atol=10 * atol)
    # the members really are different models (own seeds, own batch orders), not one model copied
    assert not torch.allclose(grouped[0].head.weight, grouped[1].head.weight)


def test_the_vmap_stack_is_its_own_reference(short, digits_dm, tmp_path):
    """A vectorised stack sums its batched products in another order, so it equals sequential fits only to
    rounding (4.4e-4 after 3 epochs on torch 2.14.1), but two stacks of the same members are identical: the
    same seed gives the same numbers on the same machine and path."""
    bank = ModelBank(short, digits_dm, ModelCache(tmp_path))
    members = [("original", 1), ("original", 2)]
    alone, first = _pairs(bank, members, vectorise=True)
    _, second = _pairs(bank, members, vectorise=True)
    for a, f, s in zip(alone, first, second):
        for name, value in f.state_dict().items():
            torch.testing.assert_close(s.state_dict()[name], value, rtol=0, atol=0)
            torch.testing.assert_close(value, a.state_dict()[name], rtol=0, atol=1e-2)


def test_train_missing_stores_what_the_bank_would_train(short, digits_dm, tmp_path):
    bank = ModelBank(short, digits_dm, ModelCache(tmp_path))
    assert bank.train_missing() == 3 + 5  # original and 2 in-shadows on D; 2 references and 3 U-LiRA models on D_r
    expected = [bank.key(*m) for group in bank.stackable() for m in group]
    assert sorted(bank.cache.trained) == sorted(expected) and bank.key("retrained", 0) not in expected
    model, meta = bank.shadow(1)  # found in the cache, under the key the sequential path uses
    assert meta["key"] in bank.cache.loaded and meta["stack_size"] == 3 and meta["train_time_s"] > 0
    alone, _ = _pairs(bank, [("original", 1)])
    torch.testing.assert_close(model.state_dict(), alone[0].state_dict(), rtol=0, atol=0)
    assert bank.train_missing() == 0  # nothing is trained twice
    assert "stack_size" not in bank.oracle()[1]  # trained alone: its time is time_ratio's denominator


def test_models_that_cannot_be_stacked_exactly_are_refused():
    def model(name):
        return build_model(name, num_classes=10, in_channels=1, image_size=8)

    one_cpu = FitSettings(trainer_kwargs={"accelerator": "cpu", "devices": 1})
    assert stack_refusal(model("mlp"), fit=one_cpu) is None
    assert stack_refusal(model("small_cnn")) is None  # grouped: exact
    assert "batch statistics" in stack_refusal(model("small_cnn"), vectorise=True)
    assert "devices" in stack_refusal(model("mlp"), fit=FitSettings(trainer_kwargs={"devices": 2}))
    dropout = torch.nn.Sequential(model("mlp"), torch.nn.Dropout(0.5))
    assert "dropout" in stack_refusal(dropout)


@pytest.mark.slow
def test_rows_are_unchanged_by_training_the_bank_in_groups(digits_preset, tmp_path, monkeypatch):
    """The same cells scored on a bank trained one by one (before issue 7) and in groups: the same numbers."""
    from benchmark.engine.grid import Display, RunPaths, run_benchmark

    preset = dataclasses.replace(digits_preset, bank=Bank(references=3, shadows=3))

    def rows(name):
        summary = run_benchmark(preset, ["ft", "trw"], forget_classes=[(3,)], display=Display(progress=False),
                                paths=RunPaths(out=tmp_path / name, cache=tmp_path / f"{name}-cache"))
        return [(row["method"], row["metrics"], row["oracle"]) for row in summary.rows]

    grouped = rows("grouped")
    monkeypatch.setattr(ModelBank, "train_missing", lambda self, max_stack=32: 0)
    sequential = rows("sequential")
    timing = {"time_s", "time_ratio"}
    for (method, metrics, oracle), (_, metrics_before, oracle_before) in zip(grouped, sequential, strict=True):
        for part, before in ((metrics, metrics_before), (oracle, oracle_before)):
            assert {k: v for k, v in part.items() if k not in timing} == pytest.approx(
                {k: v for k, v in before.items() if k not in timing}, abs=1e-9), method


def test_stacking_paths_have_their_own_cache_keys_and_auto_is_remembered(digits_preset, digits_dm, tmp_path,
                                                                         monkeypatch):
    """vmap-stacked bank models are their own reference: their keys record the path (the oracle, always
    trained alone, keeps its key); ``auto`` measures once and the cache remembers the choice."""
    import benchmark.engine.bank as bank_module
    from benchmark.engine.bank import ModelBank
    from benchmark.engine.cache import ModelCache
    from benchmark.engine.fitting import FitSettings

    cache = ModelCache(tmp_path)
    banks = {mode: ModelBank(digits_preset, digits_dm, cache, fit=FitSettings(stacking=mode))
             for mode in ("grouped", "vmap")}
    assert banks["grouped"].stacking == "grouped" and banks["vmap"].stacking == "vmap"
    assert banks["grouped"].key("original", 1) != banks["vmap"].key("original", 1)
    assert banks["grouped"].key("retrained", 0) == banks["vmap"].key("retrained", 0)
    probes = []
    monkeypatch.setattr(bank_module, "choose_stacking", lambda *a, **k: probes.append(1) or {"path": "vmap"})
    for _ in range(2):
        auto = ModelBank(digits_preset, digits_dm, cache, fit=FitSettings(stacking="auto"))
        assert auto.stacking == "vmap" and auto.key("original", 1) == banks["vmap"].key("original", 1)
    assert probes == [1]  # measured once, then read from the cache
    with pytest.raises(ValueError, match="unknown stacking"):
        FitSettings(stacking="fast")
