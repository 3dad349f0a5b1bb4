"""RMIA (attacks/rmia.py, docs/protocol.md 4b): the score worked by hand, the ROC against scikit-learn, and the
callback on a real digits cell."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from attacks import RMIA
from attacks.errors import ScoreUndefined
from attacks.functional import RMIA_OFFLINE_A, rmia_marginal, rmia_scores, roc_summary
from benchmark.engine.bank import ModelBank
from benchmark.engine.callbacks import declared_metrics
from benchmark.engine.cell import Cell, build_datamodule
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.preset import Bank, load_preset

RMIA_KEYS = {m.key for m in RMIA.metrics}


# -- the maths ------------------------------------------------------------------------------------------------


def test_marginals_by_hand():
    out = torch.tensor([[0.0, 0.2], [0.2, 0.4]])  # two OUT references, two samples: p_OUT = 0.1, 0.3
    a = RMIA_OFFLINE_A
    assert rmia_marginal(out).tolist() == pytest.approx([((1 + a) * 0.1 + 1 - a) / 2, ((1 + a) * 0.3 + 1 - a) / 2])
    assert rmia_marginal(out, offline_a=1.0).tolist() == pytest.approx([0.1, 0.3])  # a = 1: p(x) = p_OUT(x)
    # online: IN and OUT weighted equally, although there are three IN models and two OUT
    ins = torch.tensor([[0.9, 1.0], [0.8, 1.0], [1.0, 1.0]])
    assert rmia_marginal(out, ins).tolist() == pytest.approx([(0.9 + 0.1) / 2, (1.0 + 0.3) / 2])


def test_scores_by_hand():
    """a = 0.5 keeps every number a binary fraction, so the ties at LR = gamma are exact."""
    a = 0.5
    # p(x) = ((1 + a) p_OUT + (1 - a)) / 2 = 0.75 p_OUT + 0.25
    p_x = rmia_marginal(torch.tensor([[0.0, 0.0], [0.0, 0.0]]), offline_a=a)  # p_OUT(x) = 0, 0
    p_z = rmia_marginal(torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.5, 0.0]]), offline_a=a)  # p_OUT(z) = 1, 0.5, 0
    assert p_x.tolist() == [0.25, 0.25] and p_z.tolist() == [1.0, 0.625, 0.25]
    target_x = torch.tensor([0.5, 0.0625])  # p(x|θ) / p(x) = 2, 0.25
    target_z = torch.tensor([1.0, 0.625, 0.5])  # p(z|θ) / p(z) = 1, 1, 2
    # LR(x1, z) = 2/1, 2/1, 2/2 = 2, 2, 1: two of three exceed gamma = 1 (the tie does not count)
    # LR(x2, z) = 0.25, 0.25, 0.125: none exceeds 1; against gamma = 0.2, the first two do
    assert rmia_scores(target_x, p_x, target_z, p_z).tolist() == [2 / 3, 0.0]
    assert rmia_scores(target_x, p_x, target_z, p_z, gamma=0.2).tolist() == [1.0, 2 / 3]
    assert rmia_scores(target_x, p_x, target_z, p_z, gamma=0.1).tolist() == [1.0, 1.0]


def test_scores_equal_the_pairwise_ratio_matrix():
    """The sorted count equals the definition: the mean over z of [LR(x, z) > gamma], with LR divided out."""
    rng = np.random.default_rng(0)
    target_x, marginal_x = (torch.tensor(rng.uniform(0.01, 1, 40)) for _ in range(2))
    target_z, marginal_z = (torch.tensor(rng.uniform(0.01, 1, 70)) for _ in range(2))
    for gamma in (0.5, 1.0, 2.0):
        lr = (target_x / marginal_x)[:, None] / (target_z / marginal_z)[None, :]
        expected = (lr > gamma).double().mean(dim=1)
        assert torch.equal(rmia_scores(target_x, marginal_x, target_z, marginal_z, gamma=gamma), expected)


def test_a_forget_sample_the_target_still_knows_outscores_one_it_forgot():
    refs = torch.full((4, 2), 0.01)  # retrained references give both forget samples little probability
    p_z, target_z = torch.full((50,), 0.9), torch.linspace(0.5, 1.0, 50)
    scores = rmia_scores(torch.tensor([0.99, 0.001]), rmia_marginal(refs), target_z, p_z)
    assert scores[0] == 1.0 and scores[1] == 0.0


def test_bad_settings_and_empty_population_are_refused():
    with pytest.raises(ValueError, match="offline a must lie in"):
        rmia_marginal(torch.ones(2, 3), offline_a=1.5)
    with pytest.raises(ValueError, match="gamma must be positive"):
        rmia_scores(torch.ones(2), torch.ones(2), torch.ones(3), torch.ones(3), gamma=0.0)
    with pytest.raises(ScoreUndefined, match="population"):
        rmia_scores(torch.ones(2), torch.ones(2), torch.ones(0), torch.ones(0))


def test_auc_and_low_fpr_tpr_match_scikit_learn():
    rng = np.random.default_rng(1)
    # scores in steps of 1/20, like RMIA's fractions of the population: many ties, and a thin tail of negatives
    positive, negative = rng.binomial(20, 0.6, 400) / 20, rng.binomial(20, 0.3, 2000) / 20
    ours = roc_summary(torch.tensor(positive), torch.tensor(negative))
    truth, scores = np.r_[np.ones(400), np.zeros(2000)], np.r_[positive, negative]
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    assert ours["AUC"] == pytest.approx(roc_auc_score(truth, scores))
    assert ours["TPR1"] == pytest.approx(100 * tpr[fpr <= 0.01].max())
    assert ours["TPR01"] == pytest.approx(100 * tpr[fpr <= 0.001].max())
    assert 0 < ours["TPR01"] < ours["TPR1"] < 100  # the check is not vacuous: both points are inside the curve


# -- the callback on a real digits cell ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_cell(cache):
    preset = replace(load_preset("digits"), bank=Bank(references=3, shadows=2))  # test_attacks_cells' bank
    dm = build_datamodule(preset, seed=0, forget_classes=(3,))
    return Cell(preset, dm, ModelBank(preset, dm, cache), OutputsProvider(dm, cache))


def test_the_original_is_flagged_and_retraining_is_not(small_cell):
    context = small_cell.context("original", small_cell.training_key("original"))
    RMIA(context).score(small_cell.bank.outputs(small_cell.outputs, "original", 0))  # the untouched original
    method, oracle = context.method_metrics, context.oracle_metrics
    assert method.keys() == oracle.keys() == RMIA_KEYS and not context.diagnostics.get("errors")
    for prefix in ("RMIA", "RMIA_online"):
        null_mean, null_sd = method[f"{prefix}_AUC_null_mean"], method[f"{prefix}_AUC_null_sd"]
        assert null_mean == oracle[f"{prefix}_AUC_null_mean"] and abs(null_mean - 0.5) < 0.05
        # the original still gives its forget samples their class: every one outscores the oracle's
        assert method[f"{prefix}_AUC"] > null_mean + 0.4 and method[f"{prefix}_TPR01"] > 90
        # retraining scored as the method sits inside its null
        assert abs(oracle[f"{prefix}_AUC"] - null_mean) <= 3 * null_sd + 0.02 and oracle[f"{prefix}_TPR1"] < 10


def test_without_in_shadows_only_the_offline_variant_is_written(small_cell):
    context = replace(small_cell.context("original", small_cell.training_key("original")), in_shadows=None,
                      shared={})
    RMIA(context).score(small_cell.bank.outputs(small_cell.outputs, "original", 0))
    assert context.method_metrics.keys() == {k for k in RMIA_KEYS if not k.startswith("RMIA_online")}


def test_rmia_is_declared_with_its_headline_in_the_privacy_table():
    declared = {m.key: m for m in declared_metrics()}
    columns = [k for k in RMIA_KEYS if declared[k].column]
    assert columns == ["RMIA_AUC"] and declared["RMIA_AUC"].table == "privacy"
    assert declared["RMIA_AUC"].reference == "RMIA_AUC_null_mean"
