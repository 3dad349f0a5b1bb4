"""L2UL (methods/l2ul.py): its pieces by hand (inverted importance, the pull, MAS importance, targeted PGD) and
forgetting on real data with the original left untouched."""

import copy

import pytest
import torch
from claims import check_forgets_and_keeps_accuracy
from torch import nn

from benchmark.engine.cell import instantiate_method, unlearn
from benchmark.engine.models import build_model
from methods import get_method
from methods.adversarial import pgd_l2_targeted
from methods.importance import output_norm_importance
from methods.l2ul import importance_pull, inverted_importance


def test_inverted_importance_is_one_minus_the_min_max_normalised_tensor():
    got = inverted_importance({"w": torch.tensor([1.0, 3.0, 5.0]), "flat": torch.full((2, 2), 7.0)})
    torch.testing.assert_close(got["w"], torch.tensor([1.0, 0.5, 0.0]))
    torch.testing.assert_close(got["flat"], torch.ones(2, 2))  # no ranking: held like the least important


def test_the_pull_is_half_the_weighted_squared_distance_hand_computed():
    model, original = nn.Linear(2, 1, bias=False), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
        original.weight.copy_(torch.tensor([[0.0, 4.0]]))
    pull = importance_pull(model, original, {"weight": torch.tensor([[3.0, 0.5]])})
    torch.testing.assert_close(pull, torch.tensor(0.5 * (3.0 * 1.0 + 0.5 * 4.0)))


def test_mas_importance_is_the_mean_gradient_magnitude_of_the_squared_output_norm():
    """f(x) = W x: the gradient of ||W x||^2 is 2 (W x) x^T; with batches of one, MAS averages its magnitude."""
    model = nn.Linear(2, 2, bias=False)
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    with torch.no_grad():
        model.weight.copy_(w)
    xs = [torch.tensor([[1.0, 1.0]]), torch.tensor([[-2.0, 0.5]])]
    loader = [(x, torch.zeros(1, dtype=torch.long)) for x in xs]
    expected = sum((2 * torch.outer(w @ x[0], x[0])).abs() for x in xs) / 2
    torch.testing.assert_close(output_norm_importance(model, loader)["weight"], expected)
    torch.testing.assert_close(model.weight.detach(), w)  # the model is only read


def test_targeted_pgd_ends_on_the_sphere_in_the_targets_gradient_direction():
    """Logits (0, v.x): the target 1's loss falls fastest along v, so the iterates converge to x + eps v / |v|."""
    model = nn.Linear(3, 2, bias=False)
    v = torch.tensor([2.0, -1.0, 2.0])
    with torch.no_grad():
        model.weight.copy_(torch.stack([torch.zeros(3), v]))
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    adv = pgd_l2_targeted(model, x, torch.ones(5, dtype=torch.long), eps=1.5, step=0.1, steps=200,
                          generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(adv - x, (1.5 * v / v.norm()).expand(5, 3), atol=1e-3, rtol=0)
    assert (adv - x).norm(dim=1).le(1.5 + 1e-5).all()


def test_l2ul_forgets_on_digits_and_keeps_test_accuracy(original, outputs, before, digits_preset, digits_dm):
    method = instantiate_method("l2ul", copy.deepcopy(original), digits_preset, digits_dm, seed=0)
    assert method.uses == frozenset({"forget"})  # no retain data: the adversarial examples stand in for it
    unlearn(method, digits_dm)
    after = check_forgets_and_keeps_accuracy(method, outputs, before, "l2ul")
    # the reference's stopping rule fired: every forget sample misclassified, before the epoch cap
    assert method.forgotten_at_step is not None and after["UA"] == 100.0
    assert len(method._adversarial) == 20 * len(method._forget_x)
    assert not set(method._adversarial.tensors[1].tolist()) & set(method.forget_classes)
    for a, b in zip(method.original.state_dict().values(), original.state_dict().values()):
        torch.testing.assert_close(a, b)  # the attacked, anchoring original is untouched


@pytest.mark.parametrize("bad", [{"eps": 0.0}, {"pgd_step": -0.1}, {"pgd_steps": 0}, {"adversarial_per_sample": 0},
                                 {"reg_lambda": -1.0}, {"lr": -1.0}, {"epochs": -1}])
def test_bad_hyperparameters_are_refused(bad):
    with pytest.raises(ValueError):
        get_method("l2ul")(build_model("mlp", num_classes=10, in_channels=1, image_size=8), num_classes=10,
                           forget_classes=(3,), **bad)
