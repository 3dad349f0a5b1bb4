"""UAM (methods/uam.py): the ascent step by hand, the step's gradient against the reference code's route (perturb
the weights in place, backpropagate, restore), the weights left as they were, and forgetting on real data."""

import copy

import pytest
import torch
import torch.nn.functional as F
from claims import check_forgets_and_keeps_accuracy
from torch import nn

from benchmark.engine.cell import instantiate_method, unlearn
from benchmark.engine.models import build_model
from methods import get_method
from methods.uam import ascent_perturbation


def _uam(model, **hparams):
    return get_method("uam")(model, num_classes=10, forget_classes=(3,), **hparams)


def _batches(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    forget = (torch.randn(6, 1, 8, 8, generator=g), torch.full((6,), 3))
    retain = (torch.randn(10, 1, 8, 8, generator=g), torch.randint(0, 3, (10,), generator=g))
    return retain, forget


def test_the_ascent_step_has_length_rho_along_the_whole_gradient_hand_computed():
    eps = ascent_perturbation({"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([4.0])}, rho=2.0)
    torch.testing.assert_close(eps["a"], torch.tensor([1.2, 0.0]))
    torch.testing.assert_close(eps["b"], torch.tensor([1.6]))


def test_the_step_gradient_is_the_retain_gradient_at_the_perturbed_weights():
    """The reference code's route: add rho g_f / |g_f| to the weights, backpropagate the retain loss, restore."""
    torch.manual_seed(0)
    model = build_model("mlp", num_classes=10, in_channels=1, image_size=8)
    method = _uam(copy.deepcopy(model), rho=0.7)
    retain, forget = _batches()
    method.loss(retain, forget).backward()
    got = {n: p.grad.clone() for n, p in method.model.named_parameters()}

    reference = copy.deepcopy(model).train()
    (xf, yf), (xr, yr) = forget, retain
    forget_loss = F.cross_entropy(reference(torch.cat([xf, xr]))[: len(xf)], yf)
    forget_loss.backward()
    norm = torch.stack([p.grad.norm() for p in reference.parameters()]).norm()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.7 * p.grad / norm)
    reference.zero_grad()
    F.cross_entropy(reference(xr), yr).backward()
    for name, p in reference.named_parameters():
        torch.testing.assert_close(got[name], p.grad, msg=name)


def test_the_loss_leaves_the_weights_where_they_were_and_rho_0_is_fine_tuning():
    torch.manual_seed(0)
    method = _uam(build_model("mlp", num_classes=10, in_channels=1, image_size=8), rho=0.0)
    before = {n: p.detach().clone() for n, p in method.model.named_parameters()}
    retain, forget = _batches(1)
    loss = method.loss(retain, forget)
    for name, p in method.model.named_parameters():
        torch.testing.assert_close(p.detach(), before[name], msg=name)
    torch.testing.assert_close(loss, F.cross_entropy(method.model(retain[0]), retain[1]))


def test_uam_forgets_on_digits_and_keeps_test_accuracy(original, outputs, before, digits_preset, digits_dm):
    method = instantiate_method("uam", copy.deepcopy(original), digits_preset, digits_dm, seed=0)
    assert (method.rho, method.hparams.lr, method.hparams.epochs) == (1.5, 0.07, 15)  # the digits preset's values
    unlearn(method, digits_dm)
    check_forgets_and_keeps_accuracy(method, outputs, before, "uam")


def test_without_the_perturbation_the_same_schedule_does_not_forget(original, outputs, digits_preset, digits_dm):
    """rho = 0 is fine-tuning on D_r: the forgetting above comes from the forget-loss perturbation."""
    from attacks import accuracy_metrics

    method = instantiate_method("uam", copy.deepcopy(original), digits_preset, digits_dm, seed=0)
    method.rho = 0.0
    unlearn(method, digits_dm)
    assert accuracy_metrics(outputs.of(method.model, "uam-rho0"))["UA"] < 50.0


@pytest.mark.parametrize("bad", [{"rho": -0.1}, {"rho": float("nan")}, {"lr": -1.0}, {"epochs": -1}])
def test_bad_hyperparameters_are_refused(bad):
    with pytest.raises(ValueError):
        _uam(nn.Linear(64, 10), **bad)
