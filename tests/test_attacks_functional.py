"""Known-answer and reference-implementation tests of the attack maths (attacks.functional)."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve
from sklearn.svm import SVC

from attacks.errors import ScoreUndefined
from attacks.functional import (
    balanced_accuracy,
    class_balanced_sample,
    entropy,
    logit_confidence,
    mia_efficacy,
    mia_nn_reference,
    mia_nn_shadow,
    modified_entropy,
    neighbour_classes,
    neighbour_features,
    tv_distance,
    ulira_leave_one_out,
    ulira_model_summary,
    ulira_scores,
    ulira_summary,
)

RNG = np.random.default_rng(0)


def test_balanced_accuracy_matches_scikit_learn():
    truth, pred = RNG.integers(0, 2, 300), RNG.integers(0, 2, 300)
    assert balanced_accuracy(pred, truth) == pytest.approx(100 * balanced_accuracy_score(truth, pred))


# -- MIA-NN -----------------------------------------------------------------------------------------


def _features(n, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return rng.dirichlet([2.0, 3.0, 4.0], size=n) * 0.5 + shift


def test_mia_nn_is_chance_when_target_and_references_match():
    scores = [mia_nn_reference([_features(300, seed=10 * s + i) for i in range(4)], _features(300, seed=10 * s + 8),
                               [_features(300, seed=10 * s + 4 + i) for i in range(4)], _features(300, seed=10 * s + 9))
              for s in range(5)]
    assert abs(np.mean(scores) - 50) < 5  # mean of 5 attacks on 600 test points each


def test_mia_nn_is_near_perfect_when_separable():
    score = mia_nn_reference([_features(200, seed=i) for i in range(3)], _features(200, shift=0.6, seed=7),
                             [_features(200, seed=3 + i) for i in range(3)], _features(200, shift=0.6, seed=8))
    assert score > 97


def test_mia_nn_shadow_mode_learns_shadows_and_scores_target_against_oracle():
    refs = [_features(200, seed=i) for i in range(3)]
    shadows = [_features(200, shift=0.6, seed=10 + i) for i in range(3)]
    leaky = mia_nn_shadow(refs, shadows, _features(200, seed=20), _features(200, shift=0.6, seed=21))
    clean = mia_nn_shadow(refs, shadows, _features(200, seed=20), _features(200, seed=22))
    assert leaky > 97 and abs(clean - 50) < 10


def test_mia_nn_svc_agrees_with_an_independent_class_weighted_fit_on_every_sample():
    """Three references against one target: every sample is used, the classes weighted, no subsample drawn."""
    refs = [_features(100, seed=1 + i) for i in range(3)]
    refs_test = [_features(80, seed=5 + i) for i in range(3)]
    target, target_test = _features(100, shift=0.1, seed=2), _features(80, shift=0.1, seed=4)
    ours = mia_nn_reference(refs, target, refs_test, target_test, C=2.0, gamma="auto")
    clf = SVC(kernel="rbf", C=2.0, gamma="auto", class_weight={0: 400 / 600, 1: 400 / 200})
    clf.fit(np.r_[np.concatenate(refs), target], np.r_[np.zeros(300), np.ones(100)])
    pred = clf.predict(np.r_[np.concatenate(refs_test), target_test])
    assert ours == pytest.approx(100 * balanced_accuracy_score(np.r_[np.zeros(240), np.ones(80)], pred))
    assert ours == mia_nn_reference(refs, target, refs_test, target_test, C=2.0, gamma="auto")  # no random draw


def test_neighbour_classes_are_top_mean_probability_outside_forget():
    probs = torch.tensor([[0.5, 0.1, 0.3, 0.05, 0.05], [0.6, 0.2, 0.1, 0.05, 0.05]])
    # mean over samples and models: class 0 (forget) 0.55, class 2 0.2, class 1 0.15, 3 and 4 0.05
    assert neighbour_classes([probs, probs], forget_classes=[0], k=2) == [2, 1]
    with pytest.raises(ValueError, match="neighbour classes"):
        neighbour_classes([probs], forget_classes=[0], k=5)


def test_neighbour_feature_kinds():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.2, 0.1]]))
    np.testing.assert_allclose(neighbour_features(logits, [1, 3], "prob"), [[0.2, 0.1]], rtol=1e-6)
    np.testing.assert_allclose(neighbour_features(logits, [1, 3], "logprob"), np.log([[0.2, 0.1]]), rtol=1e-6)
    np.testing.assert_allclose(neighbour_features(logits, [1, 3], "renorm"), [[2 / 3, 1 / 3]], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown MIA-NN feature"):
        neighbour_features(logits, [1], "probs")


# -- U-LiRA -----------------------------------------------------------------------------------------


def test_logit_confidence_is_stable_log_odds():
    logits = torch.tensor([[2.0, 0.5, -1.0], [100.0, -100.0, 0.0]])
    labels = torch.tensor([0, 1])
    p = torch.softmax(logits.double(), 1)
    expected0 = math.log(p[0, 0] / (1 - p[0, 0]))
    psi = logit_confidence(logits, labels)
    assert psi[0].item() == pytest.approx(expected0)
    assert psi[1].item() == pytest.approx(-200.0, abs=1e-9)  # finite where p_y underflows to 0


@pytest.mark.parametrize("per_example", [False, True])
def test_ulira_likelihood_ratio_matches_scipy(per_example):
    rng = np.random.default_rng(1)
    in_stats, out_stats = rng.normal(2, 1, (8, 50)), rng.normal(0, 1.5, (8, 50))
    target = rng.normal(1, 1, 50)
    ours = ulira_scores(torch.tensor(target), torch.tensor(in_stats), torch.tensor(out_stats),
                        per_example_variance=per_example).numpy()
    if per_example:
        sd_in, sd_out = in_stats.std(0, ddof=1), out_stats.std(0, ddof=1)
    else:
        sd_in = np.sqrt(in_stats.var(0, ddof=1).mean())
        sd_out = np.sqrt(out_stats.var(0, ddof=1).mean())
    expected = norm.logpdf(target, in_stats.mean(0), sd_in) - norm.logpdf(target, out_stats.mean(0), sd_out)
    np.testing.assert_allclose(ours, expected, rtol=1e-9)


def test_ulira_auc_and_tpr_match_scikit_learn():
    rng = np.random.default_rng(2)
    pos, neg = rng.normal(0.5, 1, 400), rng.normal(-0.5, 1, 400)
    summary = ulira_summary(torch.tensor(pos), torch.tensor(neg))
    scores, truth = np.r_[pos, neg], np.r_[np.ones(400), np.zeros(400)]
    assert summary["ULiRA_AUC"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-6)
    fpr, tpr, _ = roc_curve(truth, scores)
    assert summary["ULiRA_TPR1"] == pytest.approx(100 * tpr[fpr <= 0.01].max(), abs=1e-4)
    expected = 100 * balanced_accuracy_score(truth, scores > 0)
    assert summary["ULiRA"] == pytest.approx(expected)


def _ulira_from_models(target_shift, seed):
    """Per-sample statistics of models drawn around per-sample means: in vs out separated by 3."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 2, 300)
    models = lambda k, shift: torch.tensor(base + shift + rng.normal(0, 1, (k, 300)))  # noqa: E731
    in_stats, out_stats = models(8, 3.0), models(8, 0.0)
    positive = ulira_scores(models(1, target_shift)[0], in_stats, out_stats)
    negative = ulira_scores(models(1, 0.0)[0], in_stats, out_stats)
    return ulira_summary(positive, negative)["ULiRA"]


def test_ulira_is_chance_for_a_retrained_like_target_and_high_for_an_unlearned_like_one():
    same = np.mean([_ulira_from_models(0.0, s) for s in range(5)])
    assert abs(same - 50) < 5
    assert np.mean([_ulira_from_models(3.0, s) for s in range(5)]) > 90


def _direct_leave_one_out(pos: np.ndarray, neg: np.ndarray, per_example: bool) -> tuple[np.ndarray, np.ndarray]:
    """The estimator written out with numpy/scipy, model by model, as the protocol states it."""

    def gaussian(stats):
        var = stats.var(0, ddof=1) if per_example else np.full(stats.shape[1], stats.var(0, ddof=1).mean())
        return stats.mean(0), np.sqrt(var)

    def score(x, in_stats, out_stats):
        (m_in, s_in), (m_out, s_out) = gaussian(in_stats), gaussian(out_stats)
        return norm.logpdf(x, m_in, s_in) - norm.logpdf(x, m_out, s_out)

    pos_scores = [score(pos[j], np.delete(pos, j, 0), neg) for j in range(len(pos))]
    neg_scores = [score(neg[j], pos, np.delete(neg, j, 0)) for j in range(len(neg))]
    return np.array(pos_scores), np.array(neg_scores)


@pytest.mark.parametrize("per_example", [False, True])
def test_leave_one_model_out_ulira_matches_a_direct_computation(per_example):
    rng = np.random.default_rng(3)
    pos, neg = rng.normal(1, 1, (9, 40)), rng.normal(0, 1.3, (7, 40))
    ours = ulira_leave_one_out(torch.tensor(pos), torch.tensor(neg), per_example_variance=per_example)
    expected = _direct_leave_one_out(pos, neg, per_example)
    for got, want in zip(ours, expected, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-9)
    summary = ulira_model_summary(*ours)
    scores = np.r_[expected[0].ravel(), expected[1].ravel()]
    truth = np.r_[np.ones(expected[0].size), np.zeros(expected[1].size)]
    assert summary["ULiRA_AUC"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-6)
    # every model weighs the same: the mean over models of each model's share of correct calls
    tpr = np.mean([(row > 0).mean() for row in expected[0]])
    tnr = np.mean([(row <= 0).mean() for row in expected[1]])
    assert summary["ULiRA"] == pytest.approx(50 * (tpr + tnr))
    fpr, tpr_curve, _ = roc_curve(truth, scores)
    assert summary["ULiRA_TPR1"] == pytest.approx(100 * tpr_curve[fpr <= 0.01].max(), abs=1e-4)


def test_leave_one_model_out_ulira_is_50_in_expectation_for_exchangeable_models():
    """Permutation test: 18 exchangeable "retrained" models, each with its own offset that moves all of
    its samples together (the model effect), are split at random into 9 positives and 9 negatives. The
    mean over 300 splits is 50 up to its standard error; the one-pair estimator on the same splits is
    about twice as spread."""
    rng = np.random.default_rng(4)
    base = rng.normal(0, 2, 60)
    models = base + rng.normal(0, 0.8, (18, 1)) + rng.normal(0, 1, (18, 60))  # per-model offset + noise
    loo, pair = [], []
    for _ in range(300):
        order = rng.permutation(18)
        pos, neg = torch.tensor(models[order[:9]]), torch.tensor(models[order[9:]])
        loo.append(ulira_model_summary(*ulira_leave_one_out(pos, neg))["ULiRA"])
        one_pos = ulira_scores(pos[0], pos[1:], neg[1:])
        one_neg = ulira_scores(neg[0], pos[1:], neg[1:])
        pair.append(ulira_summary(one_pos, one_neg)["ULiRA"])
    loo, pair = np.array(loo), np.array(pair)
    assert abs(loo.mean() - 50) < 3 * loo.std(ddof=1) / np.sqrt(len(loo))
    assert loo.std(ddof=1) < 0.7 * pair.std(ddof=1)


def test_leave_one_model_out_ulira_needs_three_models_a_side():
    with pytest.raises(ScoreUndefined, match="at least 3 models per side"):
        ulira_leave_one_out(torch.zeros(2, 5), torch.zeros(4, 5))


# -- MIA-efficacy and TV ----------------------------------------------------------------------------


def test_modified_entropy_hand_computed():
    p = torch.tensor([[0.7, 0.2, 0.1]])
    # label 0: -(1-0.7) ln 0.7 - 0.2 ln 0.8 - 0.1 ln 0.9
    expected0 = -0.3 * math.log(0.7) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9)
    # label 1: -(1-0.2) ln 0.2 - 0.7 ln 0.3 - 0.1 ln 0.9
    expected1 = -0.8 * math.log(0.2) - 0.7 * math.log(0.3) - 0.1 * math.log(0.9)
    assert modified_entropy(p, torch.tensor([0])).item() == pytest.approx(expected0)
    assert modified_entropy(p, torch.tensor([1])).item() == pytest.approx(expected1)
    assert entropy(p).item() == pytest.approx(-(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)))


def test_class_balanced_sample_spreads_over_classes():
    labels = torch.tensor([0] * 50 + [1] * 50 + [2] * 3)
    idx = class_balanced_sample(labels, 30, np.random.default_rng(0))
    counts = np.bincount(labels.numpy()[idx])
    assert len(idx) == 30 and len(set(idx)) == 30 and counts[2] == 3 and abs(counts[0] - counts[1]) <= 1


def test_mia_efficacy_agrees_with_an_independent_reimplementation():
    g = torch.Generator().manual_seed(3)

    def probs(n, confident):
        logits = torch.randn(n, 4, generator=g)
        labels = torch.randint(0, 4, (n,), generator=g)
        logits[torch.arange(n), labels] += 4.0 if confident else 0.5
        return logits.softmax(1), labels

    (pr, yr), (pt, yt), (pf, yf) = probs(400, True), probs(120, False), probs(80, False)
    ours = mia_efficacy(pr, yr, pt, yt, pf, yf, seed=5)
    # independent: the same class-balanced members, confidence feature, SVC(C=3, gamma="auto")
    members = class_balanced_sample(yr, len(yt), np.random.default_rng(5))
    conf = lambda p, y: p[torch.arange(len(y)), y].double().numpy()[:, None]  # noqa: E731
    clf = SVC(C=3, gamma="auto").fit(np.r_[conf(pr[members], yr[members]), conf(pt, yt)],
                                     np.r_[np.ones(len(members)), np.zeros(len(yt))])
    assert ours == pytest.approx(100 * np.mean(clf.predict(conf(pf, yf)) == 0))
    assert ours > 80  # unconfident forget samples look like non-members


def test_tv_distance_known_answer():
    a = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    b = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    assert tv_distance(a, b) == pytest.approx(0.5)  # (1 + 0) / 2
    assert tv_distance(a, a) == 0.0
