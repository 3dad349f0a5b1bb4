"""SCAR (methods/scar.py): its pieces by hand, forgetting on digits with the published values, the original untouched,
bad settings refused and a preset without surrogate images told how to name one."""

import copy
import math

import pytest
import torch
from claims import check_forgets_and_keeps_accuracy

from attacks import accuracy_metrics
from benchmark.core.errors import ConfigError
from benchmark.engine.cell import instantiate_method, unlearn
from benchmark.engine.models import build_model
from benchmark.engine.outputs import OutputsProvider
from datamodules.base import MethodData
from methods import get_method
from methods.scar import (
    ClassGaussians,
    correlation,
    fit_class_gaussians,
    mahalanobis_sq,
    nearest_class,
    shrink_covariance,
    surrogate_kl,
    surrogate_teacher,
    tukey,
)


def test_shrinkage_and_correlation_by_hand():
    cov = torch.tensor([[2.0, 0.5], [0.5, 4.0]])
    # v1 = mean variance = 3, v2 = mean non-zero covariance = 0.5
    shrunk = shrink_covariance(cov, gamma1=1.0, gamma2=2.0)
    torch.testing.assert_close(shrunk, torch.tensor([[5.0, 1.5], [1.5, 7.0]]))
    r = 1.5 / math.sqrt(35)
    torch.testing.assert_close(correlation(shrunk), torch.tensor([[1.0, r], [r, 1.0]]))


def test_tukey_clips_negative_features():
    torch.testing.assert_close(tukey(torch.tensor([4.0, 0.25, -1.0]), 0.5), torch.tensor([2.0, 0.5, 0.0]))


def test_the_distance_by_an_independent_route():
    g = torch.Generator().manual_seed(0)
    features = torch.rand(5, 4, generator=g)
    a = torch.randn(3, 4, 4, generator=g)
    gaussians = ClassGaussians((0, 2, 5), torch.rand(3, 4, generator=g), a @ a.transpose(1, 2))
    got = mahalanobis_sq(features, gaussians, delta=0.5)
    for n in range(5):
        u = features[n].sqrt() / features[n].sqrt().norm()
        for c in range(3):
            diff = u - gaussians.means[c] / gaussians.means[c].norm()
            torch.testing.assert_close(got[n, c], diff @ gaussians.precisions[c] @ diff)


def test_gaussians_are_fitted_on_retained_classes_and_the_nearest_is_one_of_them():
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[4.0, 0.1, 0.1], [0.1, 4.0, 0.1], [0.1, 0.1, 4.0]])
    labels = torch.arange(3).repeat_interleave(20)
    features = (centres[labels] + 0.3 * torch.rand(60, 3, generator=g)).clamp_min(0)
    gaussians = fit_class_gaussians(features, labels, (0, 2), delta=0.5, gamma1=3.0, gamma2=3.0)
    assert gaussians.classes == (0, 2) and gaussians.means.shape == (2, 3) and gaussians.precisions.shape == (2, 3, 3)
    torch.testing.assert_close(gaussians.means[1], features[labels == 2].sqrt().mean(0))
    # samples of each retained class sit nearest their own class; the forget class 1 is never a target
    assert torch.equal(nearest_class(features[labels == 0], gaussians, 0.5), torch.zeros(20, dtype=torch.long))
    assert torch.equal(nearest_class(features[labels == 2], gaussians, 0.5), torch.full((20,), 2))
    assert set(nearest_class(features[labels == 1], gaussians, 0.5).tolist()) <= {0, 2}
    with pytest.raises(ValueError, match="covariance"):
        fit_class_gaussians(features[:21], labels[:21], (0, 1), delta=0.5, gamma1=3.0, gamma2=3.0)


def test_the_teacher_target_on_surrogates_by_hand():
    logits = torch.tensor([[1.0, 3.0, 0.0], [2.0, 0.5, -1.0], [0.0, 1.0, 2.0]])
    keep, target = surrogate_teacher(logits, forget_classes=(1,))
    assert keep.tolist() == [False, True, True]  # the first surrogate looks like the forget class: left out
    torch.testing.assert_close(target, torch.tensor([[2.0, -1.0, -1.0], [0.0, -1.0, 2.0]]))
    student = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    p, log_q = (target / 2.0).softmax(1), student.log_softmax(1)
    torch.testing.assert_close(surrogate_kl(student, target, 2.0), (p * (p.log() - log_q)).sum(1).mean())
    assert float(surrogate_kl(student[:0], target[:0], 2.0)) == 0.0


def test_scar_forgets_on_digits_and_keeps_test_accuracy(digits_bank, digits_preset, digits_dm):
    original, _ = digits_bank.original()
    outputs = OutputsProvider(digits_dm)
    before = accuracy_metrics(outputs.of(original, "original"))
    method = instantiate_method("scar", copy.deepcopy(original), digits_preset, digits_dm, seed=0)
    h = method.hparams
    assert (h.lr, h.epochs, h.lambda_1, h.lambda_2, h.temperature, h.optimizer) == (1e-3, 10, 1.0, 0.1, 2.0, "adam")
    unlearn(method, digits_dm)
    check_forgets_and_keeps_accuracy(method, outputs, before, "scar")
    assert method.stopped_early_at is not None  # the adaptive stop ended it once D_f accuracy fell under 1%
    assert set(method.nearest.tolist()) <= set(method.retained_classes)
    for a, b in zip(method.teacher.state_dict().values(), original.state_dict().values()):
        torch.testing.assert_close(a, b)  # the teacher is the original, untouched
    assert not method.teacher.training


def test_a_preset_without_surrogate_images_is_told_how_to_name_them(digits_dm):
    method = get_method("scar")(build_model("mlp", num_classes=10, in_channels=1, image_size=8), num_classes=10,
                                forget_classes=(3,))
    with pytest.raises(ConfigError, match="surrogate: sample_images"):
        method.prepare(MethodData(digits_dm, method.uses, seed=0))


@pytest.mark.parametrize("bad", [{"lambda_1": -1.0}, {"lambda_2": -0.1}, {"delta": 0.0}, {"delta": 1.5},
                                 {"temperature": 0.0}, {"gamma1": -1.0}, {"surrogate_steps": 0},
                                 {"surrogate_size": 0}, {"target_accuracy": 2.0}, {"lr": -1.0}])
def test_bad_hyperparameters_are_refused(bad):
    with pytest.raises(ValueError):
        get_method("scar")(build_model("mlp", num_classes=10, in_channels=1, image_size=8), num_classes=10,
                           forget_classes=(3,), **bad)
