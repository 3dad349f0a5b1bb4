"""The leaderboard's pictures, drawn from result rows alone (no model is loaded or run).

(a) privacy gap against test accuracy per method, with the leaderboard's intervals as error bars;
(b) where each method sends the forget-class samples (mean probability per class over D_f) beside
where the oracle sends them, the paper's central picture; (c) U-LiRA score distributions of a few
methods against the oracle's.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmark.report.leaderboard import ORACLE, Metric, Summary, aggregate  # noqa: E402

ULIRA_METHODS = ("retrain", "trw", "rwft", "scrub", "rl", "original")  # a spread from private to leaky
FIGURES = {  # file name -> title
    "leaderboard-privacy-vs-accuracy.png": "Privacy gap against test accuracy",
    "leaderboard-forget-destination.png": "Where the forget-class samples go",
    "leaderboard-ulira-scores.png": "U-LiRA scores: unlearned model against the oracle",
}
_SAVE = {"dpi": 110, "bbox_inches": "tight", "metadata": {"Software": None}}  # no version stamp: stable files


def _ok(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == "ok"]


def _presets(rows: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({r["preset"] for r in _ok(rows)})


def error_bar(summary: Summary, key: str) -> list[list[float]] | None:
    """The interval of a mean as matplotlib's asymmetric error (below, above); None where none was claimed."""
    low, high = summary.ci[key]
    if math.isnan(low) or math.isnan(high):
        return None
    mean = summary.mean[key]
    return [[mean - low], [high - mean]]


def privacy_vs_accuracy(rows: Sequence[dict[str, Any]], path: Path, metrics: Sequence[Metric]) -> None:
    """(a) One panel per preset: each method's mean privacy gap (x) against its mean test accuracy (y), with
    their 95% cluster-bootstrap intervals over seeds as error bars (none for a method with one seed)."""
    table = aggregate(_ok(rows), metrics)
    fig, axes = plt.subplots(1, len(table), figsize=(6.5 * len(table), 5), squeeze=False)
    for ax, (preset, summaries) in zip(axes[0], table.items(), strict=True):
        for s in summaries:
            if "privacy_gap" not in s.mean or "TA" not in s.mean:
                continue
            style = {"color": "black", "marker": "*", "s": 160} if s.method == ORACLE else {"s": 40}
            ax.scatter(s.mean["privacy_gap"], s.mean["TA"], zorder=3, **style)
            ax.errorbar(s.mean["privacy_gap"], s.mean["TA"], xerr=error_bar(s, "privacy_gap"), yerr=error_bar(s, "TA"),
                        fmt="none", ecolor="0.7", zorder=2)
            ax.annotate(s.method, (s.mean["privacy_gap"], s.mean["TA"]), textcoords="offset points",
                        xytext=(4, 3), fontsize=8)
        ax.set(title=f"{preset}: nearer the top left is better (bars: 95% CI over seeds)",
               xlabel="privacy gap (points)", ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def _destination_matrix(rows: list[dict[str, Any]], forget: list[int]) -> tuple[list[str], np.ndarray]:
    """Rows: the oracle, then each method; columns: classes; values: mean probability over D_f (seed mean)."""
    per_method: dict[str, list[list[float]]] = defaultdict(list)
    oracle: list[list[float]] = []
    for r in rows:
        dest = r.get("diagnostics", {}).get("forget_destination")
        if r["forget_classes"] != forget or dest is None:
            continue
        per_method[r["method"]].append(dest["method"])
        oracle.append(dest["oracle"])  # one per (method, seed): identical within a seed, so the mean is the same
    names = [ORACLE, *sorted(per_method, key=lambda m: -np.mean(per_method[m], axis=0)[forget].sum())]
    matrix = np.array([np.mean(oracle, axis=0)] + [np.mean(per_method[m], axis=0) for m in names[1:]])
    return names, matrix


def forget_destination(rows: Sequence[dict[str, Any]], path: Path, forget: Sequence[int] | None = None) -> None:
    """(b) One heat map per preset: for one forget class, the mean probability each method (a row) gives to
    every class over D_f, the oracle's row on top. A method that unlearned like retraining has a row that
    looks like the oracle's; one that pushed the mass onto a single class, or kept it on the forget class,
    stands out."""
    presets = _presets(rows)
    fig, axes = plt.subplots(1, len(presets), figsize=(7 * len(presets), 7), squeeze=False)
    fig.subplots_adjust(wspace=0.45)
    for ax, preset in zip(axes[0], presets, strict=True):
        preset_rows = [r for r in _ok(rows) if r["preset"] == preset]
        sets = sorted({tuple(r["forget_classes"]) for r in preset_rows})
        chosen = list(forget) if forget is not None and tuple(forget) in sets else list(sets[len(sets) // 2])
        names, matrix = _destination_matrix(preset_rows, chosen)
        image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=max(float(matrix.max()), 1e-9), aspect="auto")
        ax.set_xticks(range(matrix.shape[1]), [str(k) for k in range(matrix.shape[1])])
        ax.set_yticks(range(len(names)), names)
        ax.axhline(0.5, color="white", linewidth=2)
        ax.set(title=f"{preset}: forget class {chosen}, mean probability over D_f", xlabel="class")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def ulira_scores(rows: Sequence[dict[str, Any]], path: Path, methods: Sequence[str] = ULIRA_METHODS) -> None:
    """(c) Histograms of U-LiRA's per-example scores (log-likelihood ratio, > 0 reads "unlearned") of a few
    methods' unlearned models against the oracle's, pooled over the cells of each preset."""
    presets = _presets(rows)
    shown = [m for m in methods if any(r["method"] == m for r in _ok(rows))]
    fig, axes = plt.subplots(len(presets), len(shown), figsize=(2.8 * len(shown), 2.4 * len(presets)),
                             squeeze=False, sharey="row")
    fig.subplots_adjust(hspace=0.45)
    for i, preset in enumerate(presets):
        for j, method in enumerate(shown):
            ax = axes[i][j]
            cells = [r["diagnostics"]["ulira_scores"] for r in _ok(rows) if r["preset"] == preset
                     and r["method"] == method and "ulira_scores" in r.get("diagnostics", {})]
            unlearned = np.clip(np.concatenate([c["method"] for c in cells] or [[]]), -50, 50)
            oracle = np.clip(np.concatenate([c["oracle"] for c in cells] or [[]]), -50, 50)
            bins = np.linspace(-50, 50, 41)
            ax.hist(oracle, bins=bins, alpha=0.6, color="tab:blue", label="oracle", density=True)
            ax.hist(unlearned, bins=bins, alpha=0.6, color="tab:red", label="unlearned", density=True)
            ax.axvline(0, color="black", linewidth=0.8)
            ax.set_title(f"{preset}: {method}", fontsize=9)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.supxlabel("U-LiRA score per forget sample (clipped to ±50)")
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def draw_all(rows: Sequence[dict[str, Any]], folder: Path, metrics: Sequence[Metric]) -> list[tuple[str, str]]:
    """Write every figure into ``folder``; return (title, file name) pairs for the markdown links."""
    folder.mkdir(parents=True, exist_ok=True)
    drawers = (partial(privacy_vs_accuracy, metrics=metrics), forget_destination, ulira_scores)
    for (name, _), draw in zip(FIGURES.items(), drawers, strict=True):
        draw(rows, folder / name)
    return [(title, name) for name, title in FIGURES.items()]
