"""The leaderboard's statistics: small pure functions of numbers, nothing of rows or metrics.

A leaderboard cell is one (seed, forget classes) pair. Cells of one seed share its original model and
reference bank, so they are not independent: intervals resample whole seeds (a cluster bootstrap). The
paired tests compare two methods cell by cell over the cells both have, which removes what the cells
share (an easy forget class is easy for every method).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

NAN = float("nan")
LEVEL = 0.95  # the intervals' coverage
DRAWS = 2000  # bootstrap resamples; the fixed seed makes the ends the same at every render


def cluster_bootstrap_ci(values: Sequence[float], clusters: Sequence[Hashable], *, level: float = LEVEL,
                         draws: int = DRAWS, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean, resampling clusters (seeds) with replacement.

    Each draw takes as many clusters as there are, with replacement, and averages all cells of the drawn
    clusters (a cluster drawn twice counts twice). With a single cluster there is nothing to resample:
    no interval can be claimed, and the result is (nan, nan).

    Args:
        values: one number per cell.
        clusters: the cluster (seed) of each cell, as long as ``values``.
        level: the interval's coverage.
        draws: bootstrap resamples.
        seed: of the resampling, so that a leaderboard renders the same twice.
    """
    if len(values) != len(clusters) or len(values) == 0:
        raise ValueError(f"need one cluster per value and at least one value, got {len(values)} and {len(clusters)}")
    index = {c: i for i, c in enumerate(dict.fromkeys(clusters))}
    if len(index) < 2:
        return NAN, NAN
    labels = np.array([index[c] for c in clusters])
    sums = np.bincount(labels, weights=np.asarray(values, dtype=float), minlength=len(index))
    counts = np.bincount(labels, minlength=len(index))
    picks = np.random.default_rng(seed).integers(0, len(index), size=(draws, len(index)))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _sign_flip_sums(differences: np.ndarray) -> np.ndarray:
    """The sum of the differences under every one of the 2^n sign patterns (doubling: 2^n floats, not n·2^n)."""
    sums = np.zeros(1)
    for d in differences:
        sums = np.concatenate([sums + d, sums - d])
    return sums


def sign_flip_p(differences: Sequence[float], *, seed: int = 0, max_exact: int = 20, draws: int = 20000) -> float:
    """Two-sided p of the paired sign-flip (randomisation) test that the mean difference is 0.

    Under the null each difference is as likely positive as negative, so the p-value is the share of sign
    patterns whose |sum| reaches the observed one: every pattern for n <= ``max_exact``, else ``draws``
    random ones with the +1 correction (the observed pattern counts as one of the draws), which keeps a
    Monte Carlo p from being 0. With no differences there is nothing to test: nan.

    Args:
        differences: paired differences, one per cell.
        seed: of the Monte Carlo draws.
        max_exact: the largest n enumerated exactly.
        draws: Monte Carlo sign patterns above ``max_exact``.
    """
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        return NAN
    observed = abs(d.sum())
    # sums that equal the observed one up to rounding must count as reaching it (scipy does the same)
    reached = observed - 1e-12 * max(float(np.abs(d).sum()), 1.0)
    if d.size <= max_exact:
        return float(np.mean(np.abs(_sign_flip_sums(d)) >= reached))
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(draws, d.size))
    hits = int(np.sum(np.abs(signs @ d) >= reached))
    return (hits + 1) / (draws + 1)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input's order.

    The i-th smallest of m p-values is multiplied by m − i + 1; a running maximum keeps the adjusted
    values in the order of the raw ones, and they are capped at 1. Rejecting where the adjusted p is below
    a level controls the family-wise error rate at that level. A nan (no test) stays nan and does not count
    in m.

    Args:
        p_values: raw p-values.
    """
    order = sorted((i for i, p in enumerate(p_values) if not math.isnan(p)), key=lambda i: p_values[i])
    adjusted = [NAN] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Paired:
    """Two methods compared over the cells both have: the mean of ``a − b``, its interval over seeds, p."""

    cells: int
    seeds: int
    mean: float
    ci_low: float
    ci_high: float
    p: float


def paired_difference(a: Mapping[tuple, float], b: Mapping[tuple, float], *, seed: int = 0) -> Paired:
    """Per-cell differences ``a − b`` over the shared cells: mean, cluster-bootstrap CI (clusters = seeds), p.

    Args:
        a: one value per cell of the first method; a cell is a tuple whose first element is its seed,
            ``(seed, forget classes)``.
        b: the same for the second method.
        seed: of the bootstrap and of the Monte Carlo sign flips.
    """
    shared = sorted(a.keys() & b.keys())
    if not shared:
        return Paired(0, 0, NAN, NAN, NAN, NAN)
    differences = [a[c] - b[c] for c in shared]
    clusters = [c[0] for c in shared]
    low, high = cluster_bootstrap_ci(differences, clusters, seed=seed)
    return Paired(cells=len(shared), seeds=len(set(clusters)), mean=float(np.mean(differences)),
                  ci_low=low, ci_high=high, p=sign_flip_p(differences, seed=seed))
