"""The loss and distillation methods (neggrad_plus, l1, scrub, bad_teacher, unsir) and their helpers.

Each method's claim is checked on real offline data (digits, forget class 3, the preset's
hyperparameters); the phases, schedules and helpers are checked against counts and hand computations.
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
from datamodules.base import MethodData
from methods import get_method
from methods.distillation import (
    PhaseLoader,
    class_balanced_subset,
    distillation_kl,
    random_subset,
    random_teacher,
)

FORGETTING = ("neggrad_plus", "l1", "scrub", "bad_teacher", "unsir")


def make(name, model, preset, dm, **overrides):
    """The method with the preset's hyperparameters, ``overrides`` on top."""
    method = instantiate_method(name, model, preset, dm, seed=0)
    if overrides:
        hparams = {k: v for k, v in method.hparams.items() if k not in {"num_classes", "forget_classes"}}
        method = get_method(name)(model, num_classes=dm.num_classes, forget_classes=dm.forget_classes,
                                  **(hparams | overrides))
    return method


# -- every method forgets and keeps test accuracy ---------------------------------------------------------
@pytest.mark.parametrize("name", FORGETTING)
def test_method_forgets_and_keeps_test_accuracy(name, original, digits_preset, digits_dm, outputs, before):
    method = instantiate_method(name, copy.deepcopy(original), digits_preset, digits_dm, seed=0)
    unlearn(method, digits_dm)
    check_forgets_and_keeps_accuracy(method, outputs, before, f"{name} (claim)")


@pytest.mark.parametrize(("name", "bad"), [
    ("neggrad_plus", {"beta": 1.5}), ("neggrad_plus", {"beta": -0.1}), ("l1", {"alpha": -1e-4}),
    ("scrub", {"msteps": -1}), ("scrub", {"gamma": -1.0}), ("scrub", {"temperature": 0.0}),
    ("bad_teacher", {"temperature": -1.0}), ("bad_teacher", {"retain_fraction": 0.0}),
    ("bad_teacher", {"retain_fraction": 1.5}), ("unsir", {"noise_size": 0}), ("unsir", {"retain_per_class": 0}),
    ("unsir", {"noise_reg": -0.1}), ("unsir", {"impair_epochs": 0, "repair_epochs": 0}),
    ("unsir", {"scheduler": "cosine"}),
])
def test_bad_hyperparameters_are_value_errors(name, bad):
    with pytest.raises(ValueError, match=name):
        get_method(name)(nn.Linear(4, 10), num_classes=10, forget_classes=(3,), **bad)


# -- the losses ---------------------------------------------------------------------------------------------
def test_distillation_kl_matches_a_hand_computation():
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
    teacher = torch.tensor([[0.0, 2.0, 0.0], [1.0, -1.0, 0.0]])
    for t in (1.0, 4.0):
        p_t = (teacher / t).softmax(1)
        p_s = (student / t).softmax(1)
        expected = (p_t * (p_t.log() - p_s.log())).sum(1).mean() * t * t
        torch.testing.assert_close(distillation_kl(student, teacher, t), expected)
    assert float(distillation_kl(student, student, 2.0)) == pytest.approx(0.0, abs=1e-7)
    assert float(distillation_kl(student, teacher)) > 0.1


def test_distillation_kl_sends_no_gradient_into_the_teacher():
    student = torch.randn(4, 5, requires_grad=True)
    teacher = torch.randn(4, 5, requires_grad=True)
    distillation_kl(student, teacher, 2.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_neggrad_plus_loss_is_the_weighted_difference(original, digits_dm):
    method = get_method("neggrad_plus")(copy.deepcopy(original), num_classes=10, forget_classes=(3,), beta=0.9)
    x, y = digits_dm.dataset("D_r").tensors()
    xf, yf = digits_dm.dataset("D_f").tensors()
    retain, forget = (x[:32], y[:32]), (xf[:32], yf[:32])
    expected = 0.9 * F.cross_entropy(original(retain[0]), retain[1]) - 0.1 * F.cross_entropy(original(forget[0]),
                                                                                               forget[1])
    torch.testing.assert_close(method.loss(retain, forget), expected)


def test_l1_norm_sums_every_parameter_and_starts_at_alpha():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    method = get_method("l1")(model, num_classes=2, forget_classes=(1,), alpha=1e-3, epochs=4)
    torch.testing.assert_close(method.l1_norm(), sum(p.abs().sum() for p in model.parameters()))
    assert method.current_alpha() == pytest.approx(1e-3)  # epoch 0


def test_l1_weight_decays_linearly_over_the_epochs(original, digits_preset, digits_dm):
    method = make("l1", copy.deepcopy(original), digits_preset, digits_dm, epochs=3, alpha=3e-3)
    seen, inner = [], method.loss

    def recording_loss(retain, forget):
        seen.append((method.current_epoch, method.current_alpha()))
        return inner(retain, forget)

    method.loss = recording_loss
    unlearn(method, digits_dm)
    per_epoch = dict(seen)
    assert sorted(per_epoch) == [0, 1, 2] and len(set(seen)) == 3  # one weight per epoch
    assert [per_epoch[e] for e in range(3)] == pytest.approx([3e-3, 2e-3, 1e-3])


# -- the phases ---------------------------------------------------------------------------------------------
def test_phase_loader_runs_whole_passes_in_order():
    a = DataLoader(TensorDataset(torch.arange(5)), batch_size=2)
    b = DataLoader(TensorDataset(torch.arange(3)), batch_size=2)
    loader = PhaseLoader([("a", a), ("b", b), ("a", a)])
    batches = list(loader)
    assert len(loader) == len(batches) == 3 + 2 + 3
    assert [next(iter(batch)) for batch in batches] == ["a"] * 3 + ["b"] * 2 + ["a"] * 3
    assert torch.cat([batch["a"][0] for batch in batches[:3]]).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("msteps", "epochs"), [(0, 2), (1, 2), (2, 3)])
def test_scrub_takes_max_steps_only_in_the_first_msteps_epochs(msteps, epochs, original, digits_preset, digits_dm):
    method = make("scrub", copy.deepcopy(original), digits_preset, digits_dm, msteps=msteps, epochs=epochs)
    unlearn(method, digits_dm)
    bs = method.hparams.batch_size or digits_dm.batch_size
    n_forget = -(-len(digits_dm.split_indices()["D_f"]) // bs)
    n_retain = -(-len(digits_dm.split_indices()["D_r"]) // bs)
    assert method.trainer.global_step == min(msteps, epochs) * n_forget + epochs * n_retain


def test_scrub_and_bad_teacher_teachers_stay_frozen_in_eval_mode(digits_dm):
    """With BatchNorm, a teacher put in training mode would change its running statistics."""
    torch.manual_seed(0)
    cnn = build_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    for name, teachers in (("scrub", ("teacher",)), ("bad_teacher", ("competent", "incompetent"))):
        method = get_method(name)(copy.deepcopy(cnn), num_classes=10, forget_classes=(3,), epochs=1, lr=0.01)
        saved = {t: copy.deepcopy(getattr(method, t).state_dict()) for t in teachers}
        unlearn(method, digits_dm)
        method.train()
        for t in teachers:
            teacher = getattr(method, t)
            assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
            for key, value in teacher.state_dict().items():
                torch.testing.assert_close(value, saved[t][key], msg=f"{name}.{t}.{key} changed")
        assert method.model.training
        changed = [k for k, v in method.model.state_dict().items() if not torch.equal(v, cnn.state_dict()[k])]
        assert changed, f"{name}: the student did not train"
    competent = method.competent.state_dict()
    assert all(torch.equal(competent[k], cnn.state_dict()[k]) for k in competent)  # the original model


def test_random_teacher_is_fresh_frozen_seeded_and_leaves_the_global_rng_alone():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    state = torch.random.get_rng_state()
    a, b, c = random_teacher(model, seed=1), random_teacher(model, seed=1), random_teacher(model, seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not a.training and not any(p.requires_grad for p in a.parameters())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[0].weight, c[0].weight)
    assert not torch.equal(a[0].weight, model[0].weight) and model[0].weight.requires_grad


def test_bad_teacher_trains_on_all_forget_samples_and_a_share_of_retain(original, digits_preset, digits_dm):
    method = make("bad_teacher", copy.deepcopy(original), digits_preset, digits_dm, retain_fraction=0.3)
    loader = method.unlearning_data(MethodData(digits_dm, method.uses, seed=0))
    dataset = loader.iterables["mixed"].dataset
    idx = digits_dm.split_indices()
    n_r, n_f = len(idx["D_r"]), len(idx["D_f"])
    assert len(dataset) == round(0.3 * n_r) + n_f
    labels = torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])
    assert int((labels == 3).sum()) == n_f


def test_bad_teacher_targets_the_incompetent_teacher_on_forget_samples(original, digits_dm):
    method = get_method("bad_teacher")(copy.deepcopy(original), num_classes=10, forget_classes=(3,))
    xf, yf = digits_dm.dataset("D_f").tensors()
    xr, yr = digits_dm.dataset("D_r").tensors()
    x, y = torch.cat([xf[:8], xr[:8]]), torch.cat([yf[:8], yr[:8]])
    method.log = lambda *args, **kwargs: None
    loss = method.training_step({"mixed": (x, y)}, 0)
    expected = (distillation_kl(original(xf[:8]), method.incompetent(xf[:8])) * 8
                + distillation_kl(original(xr[:8]), original(xr[:8])) * 8) / 16
    torch.testing.assert_close(loss, expected)


# -- UNSIR --------------------------------------------------------------------------------------------------
def test_unsir_noise_maximises_the_forget_class_error(original, digits_preset, digits_dm):
    method = make("unsir", copy.deepcopy(original), digits_preset, digits_dm)
    method.prepare(MethodData(digits_dm, method.uses, seed=0))
    noise = method.noise[3]
    start = torch.randn(noise.shape, generator=torch.Generator().manual_seed(0))
    target = torch.full((len(noise),), 3)
    with torch.no_grad():
        assert F.cross_entropy(original(noise), target) > F.cross_entropy(original(start), target) + 1.0
        assert method.noise_loss(noise, target) < method.noise_loss(start, target)
    # learning the noise changed no weight of the model
    for key, value in method.model.state_dict().items():
        torch.testing.assert_close(value, original.state_dict()[key])


def test_unsir_never_reads_forget_data_and_runs_impair_then_repair(original, digits_preset, digits_dm):
    method = make("unsir", copy.deepcopy(original), digits_preset, digits_dm, impair_epochs=1, repair_epochs=2,
                  lr=0.02, repair_lr=0.004)
    assert method.uses == frozenset({"retain"})
    unlearn(method, digits_dm)  # MethodData refuses D_f to a method that did not declare it
    bs = method.hparams.batch_size or digits_dm.batch_size
    n_retain = len(digits_dm.split_indices()["D_r"])  # fewer than 1000 per class: the whole of D_r
    n_noise = method.hparams.noise_size * method.hparams.noise_copies
    impair, repair = -(-(n_retain + n_noise) // bs), -(-n_retain // bs)
    assert method.trainer.global_step == impair + 2 * repair
    assert [g["lr"] for g in method.trainer.optimizers[0].param_groups] == [0.004]  # the repair step's


def test_class_balanced_and_random_subsets():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 7)
    data = TensorDataset(torch.arange(20), labels)
    sub = class_balanced_subset(data, 5, seed=0)
    counts = torch.bincount(labels[sub.indices], minlength=3).tolist()
    assert counts == [5, 3, 5]
    assert class_balanced_subset(data, 5, seed=0).indices == sub.indices != class_balanced_subset(data, 5, 1).indices
    assert len(random_subset(data, 0.3, seed=0)) == 6 and len(random_subset(data, 1.0, seed=0)) == 20
