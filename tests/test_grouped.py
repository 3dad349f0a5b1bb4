"""In-shadows unlearned as one group end exactly where their own fits end (benchmark/engine/grouped.py).

Every built-in method is checked on digits: two in-shadows unlearned one by one, then fresh copies of the same
two unlearned as one group; every weight and buffer must agree bit for bit. Epochs are capped at 2 to keep the
test fast; two epochs still cover the reshuffle between epochs and the per-epoch schedule. (The end-to-end
equality of whole rows is tests/test_cli.py's golden-row test: those rows were recorded with separate fits.)
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from benchmark.engine.cell import Cell, unlearn, unlearn_together
from benchmark.engine.fitting import FitSettings
from benchmark.engine.grouped import group_refusal
from benchmark.engine.outputs import OutputsProvider
from methods.base import method_names

REFUSED = {"scrub": "it optimises manually", "unsir": "unsir declares groupable = False",
           "sfron": "it optimises manually"}
# Checked in the default run: each kind of step the group relays (plain loss; relabelled data; hooks and
# masked gradients; a custom training_step with teachers; the similarity-tilted target; training-free).
# The others run with `pytest -m slow`.
QUICK = ("original", "ft", "rl", "salun", "bad_teacher", "trw")


@pytest.fixture(scope="module")
def cell(digits_preset, digits_dm, digits_bank):
    methods = {}
    for name in method_names():
        hparams = dict(digits_preset.methods.get(name, {}))
        epochs = hparams.get("epochs", 30 if name == "retrain" else None)
        if epochs:
            hparams["epochs"] = min(epochs, 2)
        methods[name] = hparams
    preset = dataclasses.replace(digits_preset, methods=methods)
    return Cell(preset, digits_dm, digits_bank, OutputsProvider(digits_dm))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", [m if m in QUICK else pytest.param(m, marks=pytest.mark.slow)
                                  for m in method_names() if m not in REFUSED])
def test_group_equals_separate_fits(cell, name):
    alone = []
    for index in (1, 2):
        method = cell.method(name, cell.bank.shadow(index)[0], index)
        unlearn(method, cell.dm)
        alone.append(_state(method.model))
    members = [cell.method(name, cell.bank.shadow(index)[0], index) for index in (1, 2)]
    grouped, note = unlearn_together(members, cell.dm, fit=cell.fit, labels=["one", "two"], description=name)
    assert grouped, note
    assert note in ("grouped", "training-free: prepared only")
    for expected, member in zip(alone, members, strict=True):
        got = _state(member.model)
        assert got.keys() == expected.keys()
        for key in expected:
            assert torch.equal(got[key], expected[key]), f"{name}: {key} differs from its own fit"
    if note == "grouped":  # and the members really moved (a group that trains nothing would pass the above)
        assert any(not torch.equal(a, b) for a, b in zip(_state(members[0].model).values(),
                                                          _state(cell.original).values(), strict=True))


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_methods_that_cannot_group_say_why(cell, name):
    assert group_refusal(cell.method(name), fit=cell.fit) == REFUSED[name]


def test_dropout_devices_and_step_changing_settings_are_refused(cell):
    method = cell.method("ft")
    assert "devices" in group_refusal(method, fit=FitSettings(trainer_kwargs={"devices": 2}))
    bf16 = FitSettings(trainer_kwargs={"precision": "bf16-mixed"})
    assert "precision" in group_refusal(method, fit=bf16)
    method.model = nn.Sequential(method.model, nn.Dropout(0.1))
    assert "dropout" in group_refusal(method, fit=cell.fit)


def test_a_diverging_member_stops_alone(cell):
    """A member whose loss is not finite stops (its own fit would stop), and the other trains on."""
    members = [cell.method("ga", cell.bank.shadow(index)[0], index) for index in (1, 2)]
    with torch.no_grad():
        next(members[0].model.parameters()).fill_(float("nan"))
    grouped, _ = unlearn_together(members, cell.dm, fit=cell.fit, labels=["nan", "fine"], description="ga")
    assert grouped and members[0].diverged and not members[1].diverged
    assert members[1].weights_finite()
    assert not torch.equal(_state(members[1].model)["head.weight"], cell.bank.shadow(2)[0].state_dict()["head.weight"])


def test_scar_members_stop_early_on_their_own_steps(digits_preset, digits_dm, digits_bank):
    """SCAR's adaptive stop (D_f accuracy under a target, from the third epoch) drops one member of a group at the
    step its own fit stops at, and the other trains on: the grouped in-shadows end where their own fits end."""
    scar = dict(digits_preset.methods["scar"], epochs=6, lr=3e-4, target_accuracy=0.05)
    preset = dataclasses.replace(digits_preset, methods={**digits_preset.methods, "scar": scar})
    cell = Cell(preset, digits_dm, digits_bank, OutputsProvider(digits_dm))
    alone, stops = [], []
    for index in (1, 2):
        method = cell.method("scar", cell.bank.shadow(index)[0], index)
        unlearn(method, cell.dm)
        alone.append(_state(method.model))
        stops.append(method.stopped_early_at)
    # the stop fired in both fits, before their last epoch, at different steps (digits, class 3: (4, 6), (2, 5))
    assert all(stop is not None and 2 <= stop[0] < 5 for stop in stops) and stops[0] != stops[1], stops
    members = [cell.method("scar", cell.bank.shadow(index)[0], index) for index in (1, 2)]
    grouped, note = unlearn_together(members, cell.dm, fit=cell.fit, labels=["one", "two"], description="scar")
    assert (grouped, note) == (True, "grouped")
    assert [member.stopped_early_at for member in members] == stops
    for expected, member in zip(alone, members, strict=True):
        got = _state(member.model)
        assert all(torch.equal(got[key], expected[key]) for key in expected)
