"""The offline presets' recipes produce the models the protocol needs (issue acceptance criteria)."""

import pytest

from attacks import accuracy
from benchmark.core.hashing import derive_seed
from benchmark.engine.outputs import OutputsProvider


def _test_accuracy(outputs) -> float:
    right = sum(float(accuracy(outputs.logits[s], outputs.labels[s])) * len(outputs.labels[s]) for s in ("T_f", "T_r"))
    return right / (len(outputs.labels["T_f"]) + len(outputs.labels["T_r"]))


@pytest.mark.parametrize("bank_fixture", ["digits_bank", "mnist5k_bank"])
def test_original_reaches_95_percent_and_oracle_forgets(bank_fixture, request):
    bank = request.getfixturevalue(bank_fixture)
    outputs = OutputsProvider(bank.dm)
    original, _ = bank.original()
    oracle, meta = bank.oracle()
    assert _test_accuracy(outputs.of(original, "original")) >= 95.0
    oracle_out = outputs.of(oracle, "oracle")
    assert accuracy(oracle_out.logits["T_f"], oracle_out.labels["T_f"]) <= 5.0
    assert accuracy(oracle_out.logits["D_f"], oracle_out.labels["D_f"]) <= 5.0
    assert accuracy(oracle_out.logits["T_r"], oracle_out.labels["T_r"]) >= 95.0
    assert meta["train_time_s"] > 0


def test_bank_models_are_cached_and_distinct(digits_bank):
    original, meta = digits_bank.original()
    again, meta_again = digits_bank.original()
    assert meta["key"] == meta_again["key"] and meta["key"] in digits_bank.cache.loaded
    oracle, oracle_meta = digits_bank.oracle()
    assert oracle_meta["key"] != meta["key"]
    assert digits_bank._config("retrained", 0)["forget_classes"] == [3]
    assert "forget_classes" not in digits_bank._config("original", 0)  # one original serves every forget class


def test_derived_seeds_are_distinct_and_stable():
    seeds = {derive_seed(0, role, i) for role in ("original", "retrained") for i in range(10)}
    assert len(seeds) == 20
    assert derive_seed(0, "original", 0) == derive_seed(0, "original", 0)
