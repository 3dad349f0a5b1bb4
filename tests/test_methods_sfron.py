"""SFR-on (methods/sfron.py): the adaptive forget loss, the schedule and the balanced saliency mask by hand, and
forgetting on digits with the authors' CIFAR-10 values; bad settings refused."""

import copy

import pytest
import torch
import torch.nn.functional as F
from claims import check_forgets_and_keeps_accuracy

from attacks import accuracy_metrics
from benchmark.engine.cell import instantiate_method, unlearn
from benchmark.engine.models import build_model
from benchmark.engine.outputs import OutputsProvider
from methods import get_method
from methods.importance import fisher_ratio_mask
from methods.sfron import FastSlowSchedule, adaptive_forget_loss, cosine_factor


def test_the_adaptive_weights_favour_samples_not_yet_forgotten_by_hand():
    # two classes: CE_i = log(1 + exp(-margin_i)); margins chosen so that CE = (1, 4) up to rounding
    ce = torch.tensor([1.0, 4.0])
    margins = -torch.log(torch.exp(ce) - 1)
    logits = torch.stack([margins, torch.zeros(2)], dim=1).requires_grad_(True)
    labels = torch.zeros(2, dtype=torch.long)
    loss = adaptive_forget_loss(logits, labels, lambd=0.5)
    # weights 1/sqrt(CE) normalised: (1, 1/2) / 1.5 = (2/3, 1/3); loss = 2/3 * 1 + 1/3 * 4 = 2
    torch.testing.assert_close(loss, torch.tensor(2.0))
    loss.backward()
    expected = torch.tensor([2 / 3, 1 / 3])[:, None] * (logits.detach().softmax(1) - F.one_hot(labels, 2))
    torch.testing.assert_close(logits.grad, expected)  # the weights carry no gradient
    # lambd = 0: every weight 1/N, the mean cross-entropy
    plain = F.cross_entropy(logits.detach(), labels)
    torch.testing.assert_close(adaptive_forget_loss(logits.detach(), labels, 0.0), plain)


def test_cosine_factor_runs_from_one_to_zero():
    assert cosine_factor(0, 100) == 1.0 and abs(cosine_factor(50, 100) - 0.5) < 1e-12 and cosine_factor(100, 100) == 0.0


def test_the_balanced_saliency_mask_by_hand():
    forget = {"w": torch.tensor([2.0, 1.0, 0.0, 3.0])}
    remain = {"w": torch.tensor([1.0, 1.0, 0.0, 6.0])}
    assert fisher_ratio_mask(forget, remain, 1.0)["w"].tolist() == [True, True, True, False]  # 0/0 compares as 1
    assert fisher_ratio_mask(forget, remain, 1.5)["w"].tolist() == [True, False, False, False]
    with pytest.raises(ValueError):
        fisher_ratio_mask(forget, remain, 0.0)
    with pytest.raises(ValueError):
        fisher_ratio_mask(forget, {"v": torch.ones(4)}, 1.0)


def test_the_schedule_puts_a_forget_batch_every_forget_freq_steps_and_cycles():
    retain = [("r", i) for i in range(3)]
    forget = [("f", i) for i in range(2)]
    steps = list(FastSlowSchedule(retain, forget, iterations=11, forget_freq=5))
    assert len(steps) == len(FastSlowSchedule(retain, forget, 11, 5)) == 11
    assert [i for i, s in enumerate(steps) if "forget" in s] == [0, 5, 10]
    assert [s["retain"][1] for s in steps] == [0, 1, 2] * 3 + [0, 1]
    assert [s["forget"][1] for s in steps if "forget" in s] == [0, 1, 0]


def test_sfron_forgets_on_digits_and_keeps_test_accuracy(digits_bank, digits_preset, digits_dm):
    original, _ = digits_bank.original()
    outputs = OutputsProvider(digits_dm)
    before = accuracy_metrics(outputs.of(original, "original"))
    method = instantiate_method("sfron", copy.deepcopy(original), digits_preset, digits_dm, seed=0)
    h = method.hparams
    assert (h.lr, h.iterations, h.forget_freq, h.forget_alpha, h.max_norm, h.lambd, h.threshold) == \
        (0.01, 1500, 5, 25.0, 7.0, 0.5, 1.0)
    unlearn(method, digits_dm)
    check_forgets_and_keeps_accuracy(method, outputs, before, "sfron")
    share = sum(int(m.sum()) for m in method.masks.values()) / sum(m.numel() for m in method.masks.values())
    assert 0.0 < share < 1.0  # the mask selects some weights, not all (measured: see the report)


def test_the_fast_step_moves_only_salient_weights():
    model = build_model("mlp", num_classes=10, in_channels=1, image_size=8)
    method = get_method("sfron")(model, num_classes=10, forget_classes=(3,))
    method.masks = {name: torch.rand(p.shape, generator=torch.Generator().manual_seed(0)) < 0.5
                    for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    method.mask_gradients()
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, method.masks[name].float())


@pytest.mark.parametrize("bad", [{"iterations": 0}, {"forget_freq": 0}, {"forget_alpha": -1.0}, {"lambd": -0.5},
                                 {"max_norm": 0.0}, {"threshold": 0.0}, {"epochs": 3}, {"scheduler": "cosine"},
                                 {"lr": -1.0}])
def test_bad_hyperparameters_are_refused(bad):
    with pytest.raises(ValueError):
        get_method("sfron")(build_model("mlp", num_classes=10, in_channels=1, image_size=8), num_classes=10,
                            forget_classes=(3,), **bad)
