"""UNSC (methods/unsc.py): the basis growth and projection by hand, the pseudo-labels, the masked step, batch norm
kept in eval mode, and forgetting on real data."""

import copy

import pytest
import torch
from claims import check_forgets_and_keeps_accuracy
from torch import nn

from benchmark.engine.cell import instantiate_method, unlearn
from benchmark.engine.models import build_model
from methods import get_method
from methods.unsc import extend_basis, most_likely_retained, null_space_projector, project_off

E = torch.eye(3, dtype=torch.float64)


def test_the_basis_keeps_the_fewest_strongest_directions_that_reach_the_share():
    rows = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # energies 9 and 1 of 10
    one = extend_basis(None, rows, 0.9)
    torch.testing.assert_close(one.abs(), E[:, :1])  # 9/10 reaches 0.9 with one direction
    assert extend_basis(None, rows, 0.95).shape == (3, 2)  # 0.95 needs the second as well


def test_a_later_class_adds_only_what_the_basis_does_not_explain():
    basis = extend_basis(None, torch.tensor([[3.0, 0.0, 0.0]]), 0.97)
    # all of this class's energy lies in the basis already: nothing is added
    assert extend_basis(basis, torch.tensor([[-2.0, 0.0, 0.0]]), 0.97).shape == (3, 1)
    # energies 1 (explained) and 4 (new, along e3) of 5: 1/5 < 0.97, so e3 joins
    grown = extend_basis(basis, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]), 0.97)
    torch.testing.assert_close(grown.abs(), E[:, [0, 2]])
    # ... but a share of 0.15 is reached by what the basis explains (1/5)
    assert extend_basis(basis, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]), 0.15).shape == (3, 1)


def test_the_projected_gradient_leaves_the_layer_output_on_the_basis_unchanged():
    basis = torch.linalg.qr(torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    grad = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    projected = project_off(grad, null_space_projector(basis))
    # a step W - lr G' changes W u by -lr G' u = 0 for every u in the retained span
    torch.testing.assert_close(projected @ basis.float(), torch.zeros(4, 2), atol=1e-6, rtol=0)
    # and what remains is the part of G orthogonal to the span
    expected = grad.double() - grad.double() @ basis @ basis.T
    torch.testing.assert_close(projected, expected.float(), atol=1e-6, rtol=0)


def test_the_pseudo_label_is_the_most_likely_retained_class():
    model = nn.Linear(1, 4, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0], [3.0], [2.0], [-1.0]]))  # for x = 1: logits 1, 3, 2, -1
    assert most_likely_retained(model, torch.ones(2, 1), (1,)).tolist() == [2, 2]
    assert most_likely_retained(model, torch.ones(1, 1), (1, 2)).tolist() == [0]


def test_unsc_forgets_on_digits_and_keeps_test_accuracy(original, outputs, before, digits_preset, digits_dm):
    method = instantiate_method("unsc", copy.deepcopy(original), digits_preset, digits_dm, seed=0)
    unlearn(method, digits_dm)
    check_forgets_and_keeps_accuracy(method, outputs, before, "unsc")
    assert not set(method._forget.tensors[1].tolist()) & set(method.forget_classes)
    # every layer kept a proper subspace: something to protect and room to move
    assert all(0 < kept < features for kept, features in method.basis_sizes.values()), method.basis_sizes
    for (name, p), p0 in zip(method.model.named_parameters(), original.parameters()):
        if p.dim() == 1:  # biases are frozen
            torch.testing.assert_close(p.detach(), p0, msg=name)
        else:  # each weight moved only within the null space of its layer's retained inputs
            delta = (p.detach() - p0).flatten(1)
            torch.testing.assert_close(delta @ method.projectors[name], torch.zeros_like(delta), atol=1e-4, rtol=0)


def test_batch_norm_stays_in_eval_mode_and_keeps_its_statistics(digits_preset, digits_dm):
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    method = instantiate_method("unsc", model, digits_preset, digits_dm, seed=0)
    method.hparams.epochs, method.samples_per_class = 1, 64  # a short run: the modes, not the forgetting
    buffers = {n: b.clone() for n, b in method.model.named_buffers()}
    unlearn(method, digits_dm)
    method.train()
    assert all(not m.training for m in method.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    for name, value in method.model.named_buffers():
        torch.testing.assert_close(value, buffers[name], msg=name)


@pytest.mark.parametrize("bad", [{"threshold": 0.0}, {"threshold": 1.5}, {"threshold_step": -0.1},
                                 {"samples_per_class": 0}, {"max_patches": 0}, {"lr": -1.0}, {"epochs": -1}])
def test_bad_hyperparameters_are_refused(bad):
    with pytest.raises(ValueError):
        get_method("unsc")(build_model("mlp", num_classes=10, in_channels=1, image_size=8), num_classes=10,
                           forget_classes=(3,), **bad)
