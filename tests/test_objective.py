"""The tuning objective (attacks/objective.py) against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attacks.objective import logit_confidence, objective_parts, objective_value
from attacks.outputs import Outputs

LABELS = torch.tensor([0, 0, 1, 1, 2])  # forget class 0: samples 0 and 1


def outputs(probs: list[list[float]]) -> Outputs:
    logits = torch.tensor(probs, dtype=torch.float64).log()
    return Outputs(logits={"V": logits}, labels={"V": LABELS})


ORACLE = outputs([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
REFS = [outputs([[0.2, 0.6, 0.2], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]),
        outputs([[0.4, 0.4, 0.2], [0.1, 0.3, 0.6], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])]


def test_parts_equal_a_hand_computation():
    # the method keeps sample 0 (argmax 0), forgets sample 1, and misclassifies retained sample 3
    method = outputs([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.5, 0.2, 0.3], [0.1, 0.1, 0.8]])
    parts = objective_parts(method, ORACLE, REFS, forget_classes=(0,))
    assert parts["forget_gap"] == pytest.approx(0.5)  # method 1/2 correct on the forget samples, oracle 0/2
    assert parts["utility_gap"] == pytest.approx(1 / 3)  # method 2/3 on retained samples, oracle 3/3
    mean_ref = np.array([[0.3, 0.5, 0.2], [0.15, 0.25, 0.6]])
    mine = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    assert parts["tv"] == pytest.approx(np.mean(0.5 * np.abs(mine - mean_ref).sum(axis=1)))

    def conf(p):
        return math.log(p / (1 - p))

    method_conf = (conf(0.7) + conf(0.2)) / 2
    ref_confs = [(conf(0.2) + conf(0.2)) / 2, (conf(0.4) + conf(0.1)) / 2]
    gap = abs(method_conf - np.mean(ref_confs))
    spread = np.std(ref_confs, ddof=1)
    assert parts["confidence_gap"] == pytest.approx(gap / (gap + spread))
    assert objective_value(parts, "utility") == pytest.approx(0.5 + 1 / 3)
    assert objective_value(parts) == pytest.approx(sum(parts.values()))


def test_a_reference_scores_near_zero_and_the_original_does_not():
    near = objective_parts(REFS[0], ORACLE, REFS, forget_classes=(0,))
    assert near["forget_gap"] == 0 and near["utility_gap"] == 0 and near["confidence_gap"] < 0.5
    remembers = outputs([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    far = objective_parts(remembers, ORACLE, REFS, forget_classes=(0,))
    assert far["forget_gap"] == 1 and far["tv"] > 0.5 and far["confidence_gap"] > 0.9
    assert objective_value(far) > objective_value(near) + 1


def test_logit_confidence_and_bad_input():
    probs = torch.tensor([[0.25, 0.75]], dtype=torch.float64)
    assert float(logit_confidence(probs, torch.tensor([1]))) == pytest.approx(math.log(3))
    with pytest.raises(ValueError, match="at least 2 references"):
        objective_parts(ORACLE, ORACLE, REFS[:1], forget_classes=(0,))
    with pytest.raises(ValueError, match="unknown objective"):
        objective_value({}, "speed")
