"""Every registered method, parametrized over the registry: a short run on real offline data."""

import copy

import pytest
import torch

from benchmark.engine.cell import instantiate_method, unlearn
from methods import METHODS, UnlearningMethod, get_method, method_names, register_method

SHORT = {"epochs": 1}


@pytest.mark.parametrize("name", method_names())
def test_method_runs_on_real_data_and_round_trips(name, original, digits_preset, digits_dm, tmp_path):
    method = instantiate_method(name, copy.deepcopy(original), digits_preset, digits_dm, seed=0)
    if method.hparams.epochs > 0:
        method.hparams.epochs = 1  # a short run; each method's claims are tested on full runs elsewhere
    seconds = unlearn(method, digits_dm)
    assert seconds >= 0 and not method.diverged and method.weights_finite()
    assert method(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    # checkpoint round trip: weights saved, reloaded with weights_only into a fresh instance
    path = tmp_path / "method.pt"
    torch.save(method.state_dict(), path)
    fresh = instantiate_method(name, copy.deepcopy(original), digits_preset, digits_dm, seed=0)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    for a, b in zip(method.state_dict().values(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_original_changes_nothing(original, digits_preset, digits_dm):
    method = instantiate_method("original", copy.deepcopy(original), digits_preset, digits_dm, seed=0)
    unlearn(method, digits_dm)
    for a, b in zip(method.model.state_dict().values(), original.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_ft_keeps_test_accuracy_and_rl_forgets(original, digits_preset, digits_dm):
    from attacks import accuracy_metrics
    from benchmark.engine.outputs import OutputsProvider

    outputs = OutputsProvider(digits_dm)
    before = accuracy_metrics(outputs.of(original, "original"))
    for name in ("ft", "rl"):
        method = instantiate_method(name, copy.deepcopy(original), digits_preset, digits_dm, seed=0)
        unlearn(method, digits_dm)
        after = accuracy_metrics(outputs.of(method.model, name))
        assert after["TA"] >= before["TA"] - 5.0, name
    assert after["UA"] >= 90.0  # rl relabels every forget sample away from its class


def test_random_other_labels_never_pick_a_forget_class(original):
    method = get_method("rl")(copy.deepcopy(original), num_classes=10, forget_classes=(3, 5))
    labels = method.random_other_labels(torch.full((2000,), 3), torch.Generator().manual_seed(0))
    assert set(labels.tolist()) == set(range(10)) - {3, 5}


def test_registry_refuses_duplicates_and_wrong_bases():
    with pytest.raises(ValueError, match="defined twice"):
        class AnotherFT(UnlearningMethod):  # noqa: F841
            name = "ft"
    assert METHODS["ft"].__name__ == "FineTune"
    with pytest.raises(TypeError, match="not a subclass"):
        register_method(torch.nn.Linear)


def test_unknown_method_lists_known_ones():
    with pytest.raises(KeyError) as info:
        get_method("fine_tune")
    message = info.value.args[0]
    assert "unknown method 'fine_tune'" in message and all(m in message for m in ("ft", "ga", "rl", "retrain"))
