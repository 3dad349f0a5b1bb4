"""The leaderboard: a pure function of result rows.

Rows are grouped by preset and method; each score becomes mean ± standard deviation (sample std,
0 for a single cell) over seeds and forget classes. The oracle gets a row of its own, built from the
``oracle`` part of the rows (one per distinct seed and forget-class set). Gaps are computed per cell
against that cell's oracle, then averaged. The markdown table, the rich table and the CSV/JSON exports
all come from :func:`aggregate`, so they cannot disagree.

What a score is called, which scores are columns and what "best" means come from the caller's
``metrics`` (the callbacks' declarations, ``benchmark.engine.callbacks.declared_metrics()``): this
module knows no score by name, so a new attack needs no change here.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from rich.table import Table

from benchmark.core.hashing import config_hash

ORACLE = "oracle"
BASELINES = (ORACLE, "original", "retrain")  # reference points, not contenders: never marked best


class Metric(Protocol):
    """What the report reads of a score's declaration (``attacks.metrics.MetricInfo`` has these)."""

    @property
    def key(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def ideal(self) -> str | float: ...
    @property
    def meaning(self) -> str: ...
    @property
    def column(self) -> bool: ...
    @property
    def gap(self) -> str | None: ...


@dataclass(frozen=True)
class GapColumn:
    """A column the report derives per cell: the mean distance to the cell's oracle of the metrics whose
    ``gap`` is ``of``. Not declared by a callback, since no callback sees the other callbacks' scores."""

    key: str
    label: str
    of: str
    meaning: str = ""
    unit: str = "%"  # the gap members are percentages: the gaps are percentage points
    ideal: str = "low"
    column: bool = True
    gap: None = None


# SPEC section 2; which metrics enter each gap is their own declaration (``gap``)
GAP_COLUMNS = (GapColumn("avg_gap", "Avg gap", "avg"), GapColumn("privacy_gap", "Privacy gap", "privacy"))


def gap_columns(metrics: Sequence[Metric]) -> list[GapColumn]:
    """The gap columns, each described by the labels of the metrics it averages."""
    return [replace(g, meaning="mean of abs(method − oracle) over "
                                + ", ".join(m.label for m in metrics if m.gap == g.of)) for g in GAP_COLUMNS]


def ordered(metrics: Sequence[Metric]) -> list[Metric]:
    """The metrics with the gaps inserted right after the last metric they average: derived columns sit
    beside their inputs, and the engine's cost metrics (declared last) stay at the end."""
    last = max((i for i, m in enumerate(metrics) if m.gap is not None), default=len(metrics) - 1)
    return [*metrics[:last + 1], *gap_columns(metrics), *metrics[last + 1:]]


def columns(metrics: Sequence[Metric]) -> list[Metric]:
    """Every leaderboard column, in order (present or not in a given set of rows)."""
    return [m for m in ordered(metrics) if m.column]


def cell_gaps(scores: dict[str, float], oracle: dict[str, float], metrics: Sequence[Metric]) -> dict[str, float]:
    """Avg gap and privacy gap of one cell: mean absolute differences to the cell's own oracle."""
    out = {}
    for g in GAP_COLUMNS:
        diffs = [abs(scores[m.key] - oracle[m.key]) for m in metrics
                 if m.gap == g.of and m.key in scores and m.key in oracle]
        if diffs:
            out[g.key] = sum(diffs) / len(diffs)
    return out


@dataclass
class Summary:
    """Mean and std of every score of one method on one preset."""

    method: str
    n: int
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)


def _summarise(method: str, cells: list[dict[str, float]]) -> Summary:
    summary = Summary(method=method, n=len(cells))
    keys = sorted({k for c in cells for k in c})
    for key in keys:
        values = [c[key] for c in cells if key in c]
        summary.mean[key] = statistics.fmean(values)
        summary.std[key] = statistics.stdev(values) if len(values) > 1 else 0.0
    return summary


def aggregate(rows: Iterable[dict[str, Any]], metrics: Sequence[Metric]) -> dict[str, list[Summary]]:
    """Per preset, one :class:`Summary` per method plus the oracle, sorted by gap (oracle first)."""
    by_preset: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    oracles: dict[str, dict[tuple, dict[str, float]]] = defaultdict(dict)
    for row in rows:
        if row["status"] != "ok":
            continue
        preset = row["preset"]
        by_preset[preset][row["method"]].append(row["metrics"] | cell_gaps(row["metrics"], row["oracle"], metrics))
        cell = (tuple(row["forget_classes"]), row["seed"])
        oracles[preset].setdefault(cell, row["oracle"] | cell_gaps(row["oracle"], row["oracle"], metrics))
    table = {}
    for preset, methods in sorted(by_preset.items()):
        summaries = [_summarise(m, cells) for m, cells in methods.items()]
        summaries.sort(key=lambda s: (s.mean.get("privacy_gap", math.inf), s.mean.get("avg_gap", math.inf)))
        table[preset] = [_summarise(ORACLE, list(oracles[preset].values())), *summaries]
    return table


def present_columns(summaries: Sequence[Summary], metrics: Sequence[Metric]) -> list[Metric]:
    """The columns that some summary has a value for."""
    return [c for c in columns(metrics) if any(c.key in s.mean for s in summaries)]


def _distance(value: float, ideal: str | float) -> float:
    """How far a mean is from the best it could be (smaller is better)."""
    if ideal == "low":
        return value
    if ideal == "high":
        return -value
    return abs(value - ideal)  # a declared number, or the oracle's mean


def best_methods(summaries: Sequence[Summary], column: str, metrics: Sequence[Metric]) -> set[str]:
    """The unlearning methods with the best mean in ``column`` (ties all win); baselines never compete.

    Best is the declared ``ideal``: nearest the oracle's mean, the lowest, the highest, or nearest a number.
    """
    ideal = {m.key: m for m in ordered(metrics)}[column].ideal
    oracle = next((s for s in summaries if s.method == ORACLE), None)
    contenders = [s for s in summaries if s.method not in BASELINES and column in s.mean]
    if ideal == "oracle":
        if oracle is None or column not in oracle.mean:
            return set()
        ideal = oracle.mean[column]
    if not contenders:
        return set()
    distance = {s.method: _distance(s.mean[column], ideal) for s in contenders}
    # compare at the printed precision, so two values that read the same are both marked
    best = min(round(d, 2) for d in distance.values())
    return {m for m, d in distance.items() if round(d, 2) == best}


def fmt(summary: Summary, key: str, bold: bool = False) -> str:
    if key not in summary.mean:
        return "–"
    text = f"{summary.mean[key]:.2f} ± {summary.std[key]:.2f}"
    return f"**{text}**" if bold else text


def provenance(preset_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What produced a preset's rows: commands, seeds, forget classes, versions, dates, one hash of all configs."""
    return {
        "commands": sorted({r.get("command") or "(not recorded)" for r in preset_rows}),
        "seeds": sorted({r["seed"] for r in preset_rows}),
        "forget_classes": [list(f) for f in sorted({tuple(r["forget_classes"]) for r in preset_rows})],
        "versions": sorted({r["version"] for r in preset_rows}),
        "first_started": min(r["started"] for r in preset_rows),
        "last_finished": max(r["finished"] for r in preset_rows),
        "bank": sorted({json.dumps(r.get("bank", {}), sort_keys=True) for r in preset_rows}),
        "configuration_hash": config_hash(sorted(r["config_hash"] for r in preset_rows)),
        "rows": len(preset_rows),
    }


def _provenance_lines(info: dict[str, Any], command: str) -> list[str]:
    banks = ", ".join(info["bank"])
    lines = [f"{info['rows']} rows: seeds {info['seeds']}, forget classes {info['forget_classes']}, bank {banks}, "
             f"version {', '.join(info['versions'])}, run {info['first_started']} to {info['last_finished']}, "
             f"configuration hash `{info['configuration_hash']}`. Table: `{command}`.", ""]
    commands = info["commands"]
    if len(commands) == 1:
        return lines + [f"Rows: `{commands[0]}`", ""]
    return lines + [f"<details><summary>The {len(commands)} commands that wrote the rows</summary>", "",
                    *[f"- `{c}`" for c in commands], "", "</details>", ""]


def render_markdown(rows: list[dict[str, Any]], metrics: Sequence[Metric], command: str = "bench leaderboard",
                    figures: Sequence[tuple[str, str]] = ()) -> str:
    """leaderboard.md: one table per preset, with what produced it written under each table.

    Args:
        rows: result rows (any status; only ``ok`` rows are aggregated).
        metrics: the declared metrics (their columns, labels and ideals).
        command: the command that renders the file (quoted under each table).
        figures: (title, relative path) of pictures to link at the end.
    """
    lines = ["# Leaderboard", "",
             "Generated by `bench leaderboard` from result rows; do not edit by hand. Scores are mean ± std "
             "over seeds and forget classes (percent, except TV in [0, 1] and time in seconds). Gaps are measured "
             "against each cell's oracle (a model retrained without the forget classes); lower is better. Rows are "
             "sorted by privacy gap (the mean distance of MIA-NN and U-LiRA to the oracle's). **Bold**: the best "
             "unlearning method per column (nearest the oracle for the scores, lowest for TV, gaps and time; the "
             "oracle, `original` and `retrain` are reference points and are not marked).", ""]
    grouped = aggregate(rows, metrics)
    if not grouped:
        lines.append("_No finished result rows yet: run `bench run` first._")
    for preset, summaries in grouped.items():
        preset_rows = [r for r in rows if r["preset"] == preset and r["status"] == "ok"]
        shown = present_columns(summaries, metrics)
        best = {c.key: best_methods(summaries, c.key, metrics) for c in shown}
        lines += [f"## {preset}", "",
                  "| method | cells | " + " | ".join(c.label for c in shown) + " |",
                  "|---|---:|" + "---:|" * len(shown)]
        for s in summaries:
            lines.append(f"| {s.method} | {s.n} | "
                         + " | ".join(fmt(s, c.key, s.method in best[c.key]) for c in shown) + " |")
        lines += ["", *_provenance_lines(provenance(preset_rows), command)]
    if figures:
        lines += ["## Figures", ""]
        for title, path in figures:
            lines += [f"### {title}", "", f"![{title}]({path})", ""]
    return "\n".join(lines).rstrip() + "\n"


def export_records(rows: list[dict[str, Any]], metrics: Sequence[Metric]) -> list[dict[str, Any]]:
    """The aggregation as flat records (one per preset and method): what the CSV and JSON exports hold."""
    keys = [c.key for c in columns(metrics)]
    records = []
    for preset, summaries in aggregate(rows, metrics).items():
        for s in summaries:
            record: dict[str, Any] = {"preset": preset, "method": s.method, "cells": s.n}
            for c in keys:
                if c in s.mean:
                    record[f"{c}_mean"], record[f"{c}_std"] = round(s.mean[c], 6), round(s.std[c], 6)
            records.append(record)
    return records


def render_csv(rows: list[dict[str, Any]], metrics: Sequence[Metric]) -> str:
    records = export_records(rows, metrics)
    fields = ["preset", "method", "cells"] + [f"{c.key}_{k}" for c in columns(metrics) for k in ("mean", "std")]
    fields = [f for f in fields if any(f in r for r in records)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def render_json(rows: list[dict[str, Any]], metrics: Sequence[Metric]) -> str:
    presets = sorted({r["preset"] for r in rows if r["status"] == "ok"})
    document = {"methods": export_records(rows, metrics),
                "provenance": {p: provenance([r for r in rows if r["preset"] == p and r["status"] == "ok"])
                               for p in presets}}
    return json.dumps(document, indent=1) + "\n"


def rich_tables(rows: list[dict[str, Any]], metrics: Sequence[Metric]) -> list[Table]:
    """The same aggregation as :func:`render_markdown`, as rich tables for the terminal."""
    tables = []
    for preset, summaries in aggregate(rows, metrics).items():
        shown = present_columns(summaries, metrics)
        best = {c.key: best_methods(summaries, c.key, metrics) for c in shown}
        table = Table(title=f"{preset}: mean ± std over seeds and forget classes (bold: best method)",
                      title_justify="left")
        table.add_column("method", style="bold")
        table.add_column("cells", justify="right")
        for c in shown:
            table.add_column(c.label, justify="right")
        for s in summaries:
            cells = [f"[bold green]{fmt(s, c.key)}[/]" if s.method in best[c.key] else fmt(s, c.key) for c in shown]
            table.add_row(s.method, str(s.n), *cells, style="italic dim" if s.method == ORACLE else None)
        tables.append(table)
    return tables


def _best_text(ideal: str | float) -> str:
    return {"oracle": "nearest the oracle", "low": "lowest", "high": "highest"}.get(str(ideal), f"nearest {ideal}")


def render_metric_table(metrics: Sequence[Metric]) -> str:
    """README's score table: every declared score in declaration order, then the gaps derived from them."""
    lines = ["| score | key | unit | best | leaderboard | meaning |", "|---|---|---|---|---|---|"]
    for m in [*metrics, *gap_columns(metrics)]:
        cells = (m.label, f"`{m.key}`", m.unit, _best_text(m.ideal), "column" if m.column else "rows only",
                 m.meaning)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
