"""The gradient, adversarial and weight-surgery methods (bs, be, salun, ssd, svd, amun) and their helpers.

Each method's claim is checked on real offline data (digits, forget class 3, the preset's
hyperparameters); the helpers are checked against hand computations with known answers.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from claims import check_forgets_and_keeps_accuracy
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmark.engine.cell import instantiate_method, unlearn
from benchmark.engine.models import build_model
from methods import get_method
from methods.adversarial import fgsm, pgd_l2_nearest, predicted_labels
from methods.importance import fisher_diagonal, gradient_saliency, top_fraction_mask
from methods.ssd import dampen
from methods.svd import forget_projection, layer_inputs, scaled_projection

FORGETTING = ("bs", "be", "salun", "ssd", "svd", "amun")


@pytest.fixture(scope="module")
def unlearned(original, digits_preset, digits_dm):
    """``unlearned(name)``: the method run once with the preset's hyperparameters (shared by the tests)."""
    done = {}

    def get(name):
        if name not in done:
            done[name] = instantiate_method(name, copy.deepcopy(original), digits_preset, digits_dm, seed=0)
            unlearn(done[name], digits_dm)
        return done[name]

    return get


# -- every method forgets and keeps test accuracy ---------------------------------------------------------
@pytest.mark.parametrize("name", FORGETTING)
def test_method_forgets_and_keeps_test_accuracy(name, unlearned, outputs, before):
    check_forgets_and_keeps_accuracy(unlearned(name), outputs, before, f"{name} (claim)")


@pytest.mark.parametrize(("name", "bad"), [
    ("bs", {"eps": 0.0}), ("salun", {"threshold": 0.0}), ("salun", {"threshold": 1.5}),
    ("ssd", {"alpha": -1.0}), ("ssd", {"epochs": 3}), ("svd", {"alpha_f": 0.0}), ("svd", {"samples": 0}),
    ("svd", {"epochs": 1}), ("amun", {"eps": -0.1}), ("amun", {"steps": 0}),
])
def test_bad_hyperparameters_are_value_errors(name, bad):
    with pytest.raises(ValueError, match=name):
        get_method(name)(nn.Linear(4, 10), num_classes=10, forget_classes=(3,), **bad)


# -- training-free methods: exactly the weights they claim, through a zero-epoch Trainer ------------------
def _changed(before_sd, after_sd):
    return {k for k in before_sd if not torch.equal(before_sd[k], after_sd[k])}


def test_ssd_only_dampens_and_trains_zero_epochs(original, unlearned):
    method = unlearned("ssd")
    assert method.hparams.epochs == 0 and method.trainer.max_epochs == 0 and method.trainer.global_step == 0
    old, new = original.state_dict(), method.model.state_dict()
    params = {n for n, _ in original.named_parameters()}
    assert _changed(old, new) <= params  # buffers untouched
    moved = total = 0
    for name in params:
        ratio_ok = (new[name] * old[name] >= 0) & (new[name].abs() <= old[name].abs())
        assert ratio_ok.all(), f"{name}: a weight grew or changed sign"
        moved += int((new[name] != old[name]).sum())
        total += old[name].numel()
    assert 0 < moved <= method.dampened_fraction * total  # selective: a few percent of the weights
    assert method.dampened_fraction < 0.2


def test_ssd_dampen_known_answer():
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 4.0]]))
        layer.bias.copy_(torch.tensor([5.0, 6.0]))
    i_d = {"weight": torch.tensor([[1.0, 1.0], [1.0, 1.0]]), "bias": torch.tensor([1.0, 1.0])}
    i_f = {"weight": torch.tensor([[20.0, 5.0], [40.0, 11.0]]), "bias": torch.tensor([0.0, 100.0])}
    share = dampen(layer, i_d, i_f, alpha=10.0, dampening=1.0)
    # selected where I_f > 10 I_d: w00 (beta 1/20), w10 (beta 1/40), w11 (beta 1/11), b1 (beta 1/100)
    torch.testing.assert_close(layer.weight, torch.tensor([[1 / 20, -2.0], [3 / 40, 4 / 11]]))
    torch.testing.assert_close(layer.bias, torch.tensor([5.0, 0.06]))
    assert share == pytest.approx(4 / 6)


def test_svd_projects_only_layer_weights_and_trains_zero_epochs(original, unlearned):
    method = unlearned("svd")
    assert method.hparams.epochs == 0 and method.trainer.max_epochs == 0 and method.trainer.global_step == 0
    changed = _changed(original.state_dict(), method.model.state_dict())
    linear_weights = {f"{n}.weight" for n, m in original.named_modules() if isinstance(m, nn.Linear)}
    assert changed == linear_weights  # every linear weight, the head included; no bias


def test_svd_on_a_cnn_leaves_biases_and_batch_norm_alone(digits_dm):
    torch.manual_seed(0)
    cnn = build_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    method = get_method("svd")(copy.deepcopy(cnn), num_classes=10, forget_classes=(3,), samples=90,
                               max_patches=1000)
    unlearn(method, digits_dm)
    changed = _changed(cnn.state_dict(), method.model.state_dict())
    expected = {f"{n}.weight" for n, m in cnn.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert changed == expected and len(expected) == 4


def test_svd_projection_known_answer():
    # retain activations span e1, forget activations span e2: one direction each, importance 1
    retain = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    forget = torch.tensor([[0.0, 3.0], [0.0, -1.0]])
    m_r, m_f = scaled_projection(retain, alpha=100.0), scaled_projection(forget, alpha=3.0)
    torch.testing.assert_close(m_r, torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=m_r.dtype))
    projection = forget_projection(m_r, m_f)
    torch.testing.assert_close(projection, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    # a forget space entirely shared with the retain space is left alone
    torch.testing.assert_close(forget_projection(m_r, m_r), torch.eye(2))
    # two directions with energy shares 0.8 / 0.2: importance alpha r / ((alpha - 1) r + 1)
    acts = torch.diag(torch.tensor([0.8, 0.2]).sqrt())
    m = scaled_projection(acts, alpha=3.0)
    torch.testing.assert_close(torch.diag(m), torch.tensor([2.4 / 2.6, 0.6 / 1.4], dtype=m.dtype))


def test_svd_conv_patches_match_the_weight_layout():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1, stride=2)
    x = torch.randn(4, 2, 7, 7)
    rows = layer_inputs(conv, {"conv": conv}, x, max_patches=10**6, generator=torch.Generator())["conv"]
    out = rows @ conv.weight.flatten(1).T + conv.bias  # (N * L, out)
    expected = conv(x).permute(0, 2, 3, 1).reshape(-1, 3)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


# -- SalUn: only the masked weights move --------------------------------------------------------------------
def test_salun_updates_only_the_salient_half(original, unlearned):
    method = unlearned("salun")
    masks = method.masks
    assert sum(int(m.sum()) for m in masks.values()) == round(0.5 * sum(m.numel() for m in masks.values()))
    moved = 0
    for name, p in method.model.named_parameters():
        old = dict(original.named_parameters())[name]
        mask = masks[name].cpu()
        assert torch.equal(p.detach()[~mask], old.detach()[~mask]), f"{name}: an unmasked weight moved"
        moved += int((p.detach()[mask] != old.detach()[mask]).sum())
    assert moved > 0.9 * sum(int(m.sum()) for m in masks.values())


def test_gradient_saliency_and_fisher_match_a_hand_computation():
    torch.manual_seed(0)
    model = nn.Linear(3, 4)
    x, y = torch.randn(10, 3), torch.randint(0, 4, (10,))
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    grads = []
    for xb, yb in loader:
        model.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    fisher = fisher_diagonal(model, loader)
    saliency = gradient_saliency(model, loader)
    for n in ("weight", "bias"):
        torch.testing.assert_close(fisher[n], sum(g[n] ** 2 for g in grads) / 3)
        torch.testing.assert_close(saliency[n], sum(g[n] for g in grads).abs())
    model.zero_grad()
    before = [p.detach().clone() for p in model.parameters()]
    fisher_diagonal(model, loader)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_top_fraction_mask_ranks_over_all_tensors():
    scores = {"a": torch.tensor([5.0, 1.0, 3.0]), "b": torch.tensor([[4.0], [0.0], [2.0]])}
    masks = top_fraction_mask(scores, 0.5)
    assert masks["a"].tolist() == [True, False, True] and masks["b"].flatten().tolist() == [True, False, False]
    with pytest.raises(ValueError):
        top_fraction_mask(scores, 1.5)


# -- Boundary Shrink: nearest labels are real other classes ------------------------------------------------
def test_bs_labels_forget_samples_with_retained_classes(unlearned):
    labels = unlearned("bs").nearest_labels
    assert len(labels) > 0 and 3 not in labels.tolist()
    assert len(set(labels.tolist())) > 1  # the neighbours differ between samples, unlike a fixed relabelling


# -- Boundary Expanding: the shadow neuron is pruned ---------------------------------------------------------
def test_be_prunes_its_shadow_neuron(original, unlearned):
    method = unlearned("be")
    assert method.shadow is None and method.model.head.out_features == 10
    assert set(method.state_dict()) == {f"model.{k}" for k in original.state_dict()}
    assert method(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


# -- adversarial helpers --------------------------------------------------------------------------------------
def _linear_model():
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        model.bias.zero_()
    return model


def test_fgsm_matches_the_analytic_gradient_sign():
    model = _linear_model()
    x = torch.tensor([[2.0, 1.0], [0.5, 3.0]])
    y = torch.tensor([0, 1])
    p = model(x).softmax(dim=1)
    grad = (p - F.one_hot(y, 3)) @ model.weight  # d CE / d x for a linear model
    torch.testing.assert_close(fgsm(model, x, y, eps=0.1), x + 0.1 * grad.sign())


def test_predicted_labels_never_name_excluded_classes():
    model = _linear_model()
    x = torch.tensor([[2.0, 1.0], [0.5, 3.0], [-3.0, -3.0]])
    assert predicted_labels(model, x).tolist() == [0, 1, 2]
    assert predicted_labels(model, x, exclude=(0, 2)).tolist() == [1, 1, 1]


def test_pgd_l2_finds_the_nearest_boundary_of_a_linear_model():
    model = _linear_model()
    x = torch.tensor([[2.0, 1.0], [3.0, 0.5], [1.0, 3.0], [-4.0, -4.0]])
    y = torch.tensor([0, 0, 1, 0])  # the last one is already misclassified (class 2)
    x_adv, radius = pgd_l2_nearest(model, x, y, eps=0.3, steps=50)
    assert (model(x_adv).argmax(dim=1) != y).all()
    assert torch.equal(x_adv[3], x[3]) and radius[3] == 0
    boundary = (x[:3, 0] - x[:3, 1]).abs() / 2**0.5  # distance to the line x0 = x1
    distance = (x_adv[:3] - x[:3]).norm(dim=1)
    assert (distance >= boundary - 1e-5).all()
    assert (distance <= boundary + 0.1 * radius[:3] + 1e-5).all()  # overshoot at most one step
