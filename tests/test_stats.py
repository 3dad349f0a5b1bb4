import math

import numpy as np
import pytest
from scipy import stats

from benchmark.report.stats import cluster_bootstrap_ci, holm, paired_difference, sign_flip_p

# a paired sample with no two |differences| alike, so no pattern ties with another by accident
X = np.array([3.1, 0.4, 2.2, -0.7, 1.9, 0.8, 2.6, -0.2, 1.3])
Y = np.array([1.0, 0.9, 0.1, -0.3, 0.2, 1.7, 0.5, -1.1, 1.2])


def mean_difference(x, y, axis):
    return np.mean(x - y, axis=axis)


# -- cluster bootstrap ---------------------------------------------------------------------------------

def test_two_clusters_give_the_interval_between_their_means():
    # draws are {A, A} (1/4), {A, B} (1/2), {B, B} (1/4): the 2.5% and 97.5% points are A's and B's means
    low, high = cluster_bootstrap_ci([1.0, 3.0, 10.0, 14.0], [0, 0, 1, 1])
    assert (low, high) == pytest.approx((2.0, 12.0))


def test_unequal_clusters_pool_their_cells():
    # drawing A and B gives the mean of all five cells, not the mean of the two cluster means
    values, clusters = [0.0, 0.0, 0.0, 0.0, 10.0], [0, 0, 0, 0, 1]
    low, high = cluster_bootstrap_ci(values, clusters, level=0.4)  # the 30% and 70% points: the mixed draw
    assert low == high == pytest.approx(2.0)


def test_one_cluster_claims_no_interval():
    low, high = cluster_bootstrap_ci([1.0, 2.0, 3.0], [7, 7, 7])
    assert math.isnan(low) and math.isnan(high)


def test_singleton_clusters_are_the_ordinary_percentile_bootstrap():
    values = [4.0, 7.5, 1.2, 9.9, 5.5, 3.3, 6.1, 8.0, 2.4, 5.0]
    ours = cluster_bootstrap_ci(values, range(len(values)), draws=20000)
    theirs = stats.bootstrap((values,), np.mean, method="percentile", n_resamples=20000, random_state=1)
    assert ours == pytest.approx((theirs.confidence_interval.low, theirs.confidence_interval.high), abs=0.15)


def test_bootstrap_is_deterministic_and_rejects_mismatched_input():
    values, clusters = [1.0, 5.0, 2.0, 8.0, 3.0, 4.0], [0, 0, 1, 1, 2, 2]
    assert cluster_bootstrap_ci(values, clusters) == cluster_bootstrap_ci(values, clusters)
    with pytest.raises(ValueError):
        cluster_bootstrap_ci([1.0], [0, 1])
    with pytest.raises(ValueError):
        cluster_bootstrap_ci([], [])


# -- sign-flip test ------------------------------------------------------------------------------------

def test_exact_sign_flip_p_matches_scipys_paired_permutation_test():
    theirs = stats.permutation_test((X, Y), mean_difference, permutation_type="samples", vectorized=True,
                                    alternative="two-sided", n_resamples=10**6)
    assert sign_flip_p(X - Y) == pytest.approx(theirs.pvalue)
    assert 0.0 < sign_flip_p(X - Y) < 1.0


def test_sign_flip_p_by_hand():
    assert sign_flip_p([2.5]) == 1.0  # n = 1: the flipped sign reaches |2.5| too
    assert sign_flip_p([1.0, 2.0, 0.5, 3.0, 1.5]) == pytest.approx(2 / 32)  # only all-plus and all-minus
    assert sign_flip_p([0.0, 0.0, 0.0]) == 1.0
    assert sign_flip_p([1.0, -1.0]) == 1.0  # observed sum 0
    assert math.isnan(sign_flip_p([]))


def test_monte_carlo_sign_flip_p_is_near_the_exact_one_and_never_zero():
    rng = np.random.default_rng(3)
    d = rng.normal(0.3, 1.0, size=14)
    exact = sign_flip_p(d)
    assert sign_flip_p(d, max_exact=5, draws=40000) == pytest.approx(exact, abs=0.01)
    # 30 positive differences: exact p = 2 / 2^30; with the +1 correction Monte Carlo says at least 1/(draws+1)
    assert sign_flip_p(np.ones(30), draws=999) == pytest.approx(1 / 1000)


# -- Holm ----------------------------------------------------------------------------------------------

def test_holm_by_hand():
    # sorted: 0.01 * 4 = 0.04, 0.02 * 3 = 0.06, 0.03 * 2 = 0.06, 0.5 * 1 = 0.5; back in input order
    assert holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    # the running maximum: 0.04 * 2 = 0.08 would come below 0.04 * 3 = 0.12; the cap at 1
    assert holm([0.04, 0.04, 0.04]) == pytest.approx([0.12, 0.12, 0.12])
    assert holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_holm_skips_missing_tests():
    adjusted = holm([0.01, float("nan"), 0.04])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)


# -- paired comparison ---------------------------------------------------------------------------------

def test_paired_difference_over_shared_cells():
    a = {(0, (1,)): 10.0, (0, (3,)): 12.0, (1, (1,)): 20.0, (1, (3,)): 22.0, (2, (1,)): 5.0}
    b = {(0, (1,)): 9.0, (0, (3,)): 10.0, (1, (1,)): 17.0, (1, (3,)): 18.0}  # no seed-2 cell: not compared
    result = paired_difference(a, b)
    assert (result.cells, result.seeds) == (4, 2)
    assert result.mean == pytest.approx(2.5)  # differences 1, 2, 3, 4
    assert (result.ci_low, result.ci_high) == pytest.approx((1.5, 3.5))  # seed 0's mean, seed 1's mean
    assert result.p == pytest.approx(2 / 16)


def test_paired_difference_without_shared_cells_is_empty():
    result = paired_difference({(0, (1,)): 1.0}, {(1, (1,)): 2.0})
    assert result.cells == 0 and math.isnan(result.mean) and math.isnan(result.p)
