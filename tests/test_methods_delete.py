"""DELETE (methods/delete.py): the masked target by hand, its kinship with RWFT's, and forgetting on real data."""

import copy

import pytest
import torch
from claims import check_forgets_and_keeps_accuracy

from attacks import accuracy_metrics
from benchmark.engine.cell import instantiate_method, unlearn
from benchmark.engine.models import build_model
from benchmark.engine.outputs import OutputsProvider
from methods import get_method
from methods.delete import masked_target
from methods.trw import tilted_target


def test_the_target_is_the_teacher_without_the_own_class_hand_computed():
    logits = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1]]).log()
    target = masked_target(logits, torch.tensor([0, 2]))
    expected = torch.tensor([[0.0, 0.5, 1 / 3, 1 / 6], [0.5, 0.375, 0.0, 0.125]], dtype=torch.float64)
    torch.testing.assert_close(target, expected)


def test_on_one_forget_class_the_target_is_rwfts():
    """Each forget sample's own label is the forget class, so masking it is RWFT's untilted renormalisation."""
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.full((16,), 3)
    torch.testing.assert_close(masked_target(logits, labels), tilted_target(logits, torch.zeros(10), (3,), 0.0))


def test_delete_sees_only_the_forget_data_with_the_published_schedule():
    method = get_method("delete")(build_model("mlp", num_classes=10, in_channels=1, image_size=8), num_classes=10,
                                  forget_classes=(3,))
    assert method.uses == frozenset({"forget"})
    h = method.hparams
    assert (h.lr, h.epochs, h.momentum, h.weight_decay, h.optimizer) == (1e-3, 20, 0.9, 0.0, "sgd")


def test_delete_forgets_on_digits_and_keeps_test_accuracy(digits_bank, digits_preset, digits_dm):
    original, _ = digits_bank.original()
    outputs = OutputsProvider(digits_dm)
    before = accuracy_metrics(outputs.of(original, "original"))
    method = instantiate_method("delete", copy.deepcopy(original), digits_preset, digits_dm, seed=0)
    unlearn(method, digits_dm)
    check_forgets_and_keeps_accuracy(method, outputs, before, "delete")
    for a, b in zip(method.teacher.state_dict().values(), original.state_dict().values()):
        torch.testing.assert_close(a, b)  # the teacher is the original, untouched


def test_the_teacher_keeps_its_batch_norm_statistics(digits_preset, digits_dm):
    """On a model with batch norm the teacher must predict in eval mode and never update its running statistics."""
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    method = instantiate_method("delete", model, digits_preset, digits_dm, seed=0)
    method.hparams.epochs = 1
    before = copy.deepcopy(method.teacher.state_dict())
    unlearn(method, digits_dm)
    assert not method.teacher.training
    for name, value in method.teacher.state_dict().items():
        torch.testing.assert_close(value, before[name], msg=name)
    assert any(not torch.equal(a, b) for a, b in zip(method.model.state_dict().values(), before.values()))


@pytest.mark.parametrize("bad", [{"lr": -1.0}, {"epochs": -1}])
def test_bad_hyperparameters_are_refused(bad):
    with pytest.raises(ValueError):
        get_method("delete")(build_model("mlp", num_classes=10, in_channels=1, image_size=8), num_classes=10,
                             forget_classes=(3,), **bad)
