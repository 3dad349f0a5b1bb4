"""TRW and RWFT (docs/protocol.md, section 7): the tilted target, the similarity, and forgetting on real data."""

import copy
import math

import pytest
import torch

from attacks import accuracy_metrics
from attacks.fidelity import retrained_distribution, similarity_fidelity
from benchmark.engine.cell import instantiate_method, unlearn
from benchmark.engine.models import build_model
from benchmark.engine.outputs import OutputsProvider
from methods import get_method
from methods.trw import class_representations, class_similarity, forget_cosines, tilted_target


def test_target_with_beta_zero_is_the_renormalised_original():
    p0 = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    q = tilted_target(p0.log(), torch.tensor([0.0, 0.5, 0.3, 0.2]), forget_classes=(0,), beta=0.0)
    torch.testing.assert_close(q, torch.tensor([[0.0, 0.5, 1 / 3, 1 / 6]], dtype=torch.float64))


def test_target_is_the_exponential_tilt_hand_computed():
    p0 = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    s = torch.tensor([0.0, 0.1, 0.6, 0.3])
    beta = 2.0
    weights = [0.0] + [p * math.exp(beta * sk) for p, sk in zip([0.3, 0.2, 0.1], [0.1, 0.6, 0.3])]
    expected = torch.tensor([[w / sum(weights) for w in weights]], dtype=torch.float64)
    torch.testing.assert_close(tilted_target(p0.log(), s, (0,), beta), expected)


def test_larger_beta_raises_expected_similarity():
    """The information projection onto {E_q[s] >= c}: beta is the constraint's multiplier."""
    g = torch.Generator().manual_seed(0)
    logits, s = torch.randn(50, 6, generator=g), torch.rand(6, generator=g)
    s[2] = 0
    expected = [float((tilted_target(logits, s, (2,), b) * s.double()).sum(1).mean()) for b in (0, 1, 5, 20)]
    assert expected == sorted(expected) and expected[-1] > expected[0]


def test_similarity_is_a_distribution_over_retained_classes():
    cos = torch.tensor([float("nan"), 0.9, 0.1, -0.5], dtype=torch.float64)
    sharp, flat = class_similarity(cos, (0,), 0.05), class_similarity(cos, (0,), 10.0)
    for s in (sharp, flat):
        assert s[0] == 0 and float(s.sum()) == pytest.approx(1.0)
    assert sharp[1] > 0.99 and flat.max() < 0.4
    with pytest.raises(ValueError, match="temperature"):
        class_similarity(cos, (0,), 0.0)


def test_forget_cosines_find_the_class_that_looks_alike():
    reps = torch.tensor([[1.0, 0.0, 0.2], [0.9, 0.1, 0.2], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    cos = forget_cosines(reps, (0,), pca_dim=None)
    assert math.isnan(cos[0]) and int(torch.nan_to_num(cos, nan=-2).argmax()) == 1
    assert int(torch.nan_to_num(forget_cosines(reps, (0,), pca_dim=2), nan=-2).argmax()) == 1
    with pytest.raises(ValueError, match="pca_dim"):
        forget_cosines(reps, (0,), pca_dim=9)


def test_class_mean_representation_known_answer():
    model = torch.nn.Linear(2, 2, bias=False)
    model.weight.data = torch.eye(2)
    images, labels = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0, 1])
    reps = class_representations(model, images, labels, 3, "mean_logits")
    torch.testing.assert_close(reps, torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]], dtype=torch.float64))


def test_fidelity_is_one_for_the_references_own_order():
    refs = [torch.tensor([[0.5, 0.3, 0.15, 0.05]]), torch.tensor([[0.6, 0.2, 0.15, 0.05]])]
    assert retrained_distribution(refs, (0,))[0] == 0
    assert similarity_fidelity(torch.tensor([0.0, 0.6, 0.3, 0.1]), refs, (0,)) == pytest.approx(1.0)
    assert similarity_fidelity(torch.tensor([0.0, 0.1, 0.3, 0.6]), refs, (0,)) == pytest.approx(-1.0)


@pytest.mark.parametrize("name", ["trw", "rwft"])
def test_trw_and_rwft_forget_on_digits_and_keep_test_accuracy(name, digits_bank, digits_preset, digits_dm):
    original, _ = digits_bank.original()
    outputs = OutputsProvider(digits_dm)
    before = accuracy_metrics(outputs.of(original, "original"))
    method = instantiate_method(name, copy.deepcopy(original), digits_preset, digits_dm, seed=0)
    unlearn(method, digits_dm)
    after = accuracy_metrics(outputs.of(method.model, name))
    assert after["UA"] >= 90 and after["TA"] >= before["TA"] - 5
    similarity = method.class_similarity
    assert similarity[3] == 0 and float(similarity.sum()) == pytest.approx(1.0, abs=1e-5)
    # the diagnostics: p~'s mean over D_f is a distribution without the forget class; the tilt moves it
    # for TRW (by a fraction of its mass) and not at all for RWFT
    base = method.forget_base_distribution
    assert base[3] == 0 and float(base.sum()) == pytest.approx(1.0, abs=1e-5)
    assert (0 < method.tilt_tv < 1) if name == "trw" else method.tilt_tv == 0.0
    # the original model is kept frozen and unchanged as the source of the target
    for a, b in zip(method.original.state_dict().values(), original.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_rwft_is_trw_with_beta_zero():
    model = build_model("mlp", num_classes=5, in_channels=1, image_size=2)
    assert get_method("rwft")(model, num_classes=5, forget_classes=(1,)).hparams.beta == 0.0
    with pytest.raises(ValueError, match="beta = 0"):
        get_method("rwft")(model, num_classes=5, forget_classes=(1,), beta=10.0)
    with pytest.raises(ValueError, match="representation"):
        get_method("trw")(model, num_classes=5, forget_classes=(1,), representation="logits")
