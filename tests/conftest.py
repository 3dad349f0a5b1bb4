"""Shared fixtures: set-up offline DataModules and a model cache shared by the whole test session,
so the original and oracle models of each offline preset are trained at most once per run."""

from __future__ import annotations

import pytest
import torch

from attacks import accuracy_metrics
from benchmark.engine.bank import ModelBank
from benchmark.engine.cache import ModelCache
from benchmark.engine.cell import build_datamodule
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.preset import load_preset

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> ModelCache:
    return ModelCache(tmp_path_factory.mktemp("model-cache"))


@pytest.fixture(scope="session")
def digits_preset():
    """digits with its hand-set hyperparameters: the methods' claim tests pin what each method does with the
    values its module documents, whatever a later `bench tune` chooses (tests/test_tune.py covers tuning)."""
    return load_preset("digits", tuned=False)


@pytest.fixture(scope="session")
def digits_dm(digits_preset):
    return build_datamodule(digits_preset, seed=0, forget_classes=(3,))


@pytest.fixture(scope="session")
def digits_bank(digits_preset, digits_dm, cache) -> ModelBank:
    return ModelBank(digits_preset, digits_dm, cache)


@pytest.fixture(scope="session")
def mnist5k_bank(cache) -> ModelBank:
    preset = load_preset("mnist5k")
    return ModelBank(preset, build_datamodule(preset, seed=0, forget_classes=(3,)), cache)


@pytest.fixture(scope="module")
def original(digits_bank):
    """The digits original model (forget class 3, seed 0)."""
    return digits_bank.original()[0]


@pytest.fixture(scope="module")
def outputs(digits_dm):
    """An outputs provider for the digits cell; memoised per test module."""
    return OutputsProvider(digits_dm)


@pytest.fixture(scope="module")
def before(original, outputs):
    """The original model's UA, FTA, RA and TA on the digits cell."""
    return accuracy_metrics(outputs.of(original, "original"))
