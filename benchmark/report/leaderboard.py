"""The leaderboard: a pure function of result rows.

Rows are grouped by preset and method; each score becomes mean ± standard deviation (sample std,
0 for a single cell) over seeds and forget classes. The oracle gets a row of its own, built from the
``oracle`` part of the rows (one per distinct seed and forget-class set). Gaps are computed per cell
against that cell's oracle, then averaged. The markdown table, the rich table and the CSV/JSON exports
all come from :func:`aggregate`, so they cannot disagree.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from benchmark.engine.cache import config_hash

GAP_METRICS = ("UA", "FTA", "RA", "TA", "MIA_eff")  # SalUn's Avg gap convention plus FTA (SPEC section 2)
PRIVACY_METRICS = ("MIA_NN", "ULiRA")
COLUMNS = ("UA", "FTA", "RA", "TA", "MIA_eff", "TV", "MIA_NN", "ULiRA", "avg_gap", "privacy_gap", "time_s")
LABELS = {"MIA_eff": "MIA-eff", "MIA_NN": "MIA-NN", "ULiRA": "U-LiRA", "avg_gap": "Avg gap",
          "privacy_gap": "Privacy gap", "time_s": "time (s)"}
ORACLE = "oracle"
BASELINES = (ORACLE, "original", "retrain")  # reference points, not contenders: never marked best
CLOSEST_TO_ORACLE = ("UA", "FTA", "RA", "TA", "MIA_eff", "MIA_NN", "ULiRA")  # best = nearest the oracle's mean
LOWEST = ("TV", "avg_gap", "privacy_gap", "time_s")  # best = smallest


def cell_gaps(metrics: dict[str, float], oracle: dict[str, float]) -> dict[str, float]:
    """Avg gap and privacy gap of one cell: mean absolute differences to the cell's own oracle."""
    out = {}
    for name, keys in (("avg_gap", GAP_METRICS), ("privacy_gap", PRIVACY_METRICS)):
        diffs = [abs(metrics[k] - oracle[k]) for k in keys if k in metrics and k in oracle]
        if diffs:
            out[name] = sum(diffs) / len(diffs)
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


def aggregate(rows: Iterable[dict[str, Any]]) -> dict[str, list[Summary]]:
    """Per preset, one :class:`Summary` per method plus the oracle, sorted by gap (oracle first)."""
    by_preset: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    oracles: dict[str, dict[tuple, dict[str, float]]] = defaultdict(dict)
    for row in rows:
        if row["status"] != "ok":
            continue
        preset = row["preset"]
        by_preset[preset][row["method"]].append(row["metrics"] | cell_gaps(row["metrics"], row["oracle"]))
        cell = (tuple(row["forget_classes"]), row["seed"])
        oracles[preset].setdefault(cell, row["oracle"] | cell_gaps(row["oracle"], row["oracle"]))
    table = {}
    for preset, methods in sorted(by_preset.items()):
        summaries = [_summarise(m, cells) for m, cells in methods.items()]
        summaries.sort(key=lambda s: (s.mean.get("privacy_gap", math.inf), s.mean.get("avg_gap", math.inf)))
        table[preset] = [_summarise(ORACLE, list(oracles[preset].values())), *summaries]
    return table


def present_columns(summaries: Sequence[Summary]) -> list[str]:
    return [c for c in COLUMNS if any(c in s.mean for s in summaries)]


def best_methods(summaries: Sequence[Summary], column: str) -> set[str]:
    """The unlearning methods with the best mean in ``column`` (ties all win); baselines never compete."""
    oracle = next((s for s in summaries if s.method == ORACLE), None)
    contenders = [s for s in summaries if s.method not in BASELINES and column in s.mean]
    if not contenders:
        return set()
    if column in CLOSEST_TO_ORACLE:
        if oracle is None or column not in oracle.mean:
            return set()
        distance = {s.method: abs(s.mean[column] - oracle.mean[column]) for s in contenders}
    else:
        distance = {s.method: s.mean[column] for s in contenders}
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


def render_markdown(rows: list[dict[str, Any]], command: str = "bench leaderboard",
                    figures: Sequence[tuple[str, str]] = ()) -> str:
    """leaderboard.md: one table per preset, with what produced it written under each table.

    Args:
        rows: result rows (any status; only ``ok`` rows are aggregated).
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
    grouped = aggregate(rows)
    if not grouped:
        lines.append("_No finished result rows yet: run `bench run` first._")
    for preset, summaries in grouped.items():
        preset_rows = [r for r in rows if r["preset"] == preset and r["status"] == "ok"]
        columns = present_columns(summaries)
        best = {c: best_methods(summaries, c) for c in columns}
        lines += [f"## {preset}", "",
                  "| method | cells | " + " | ".join(LABELS.get(c, c) for c in columns) + " |",
                  "|---|---:|" + "---:|" * len(columns)]
        for s in summaries:
            lines.append(f"| {s.method} | {s.n} | " + " | ".join(fmt(s, c, s.method in best[c]) for c in columns)
                         + " |")
        lines += ["", *_provenance_lines(provenance(preset_rows), command)]
    if figures:
        lines += ["## Figures", ""]
        for title, path in figures:
            lines += [f"### {title}", "", f"![{title}]({path})", ""]
    return "\n".join(lines).rstrip() + "\n"


def export_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The aggregation as flat records (one per preset and method): what the CSV and JSON exports hold."""
    records = []
    for preset, summaries in aggregate(rows).items():
        for s in summaries:
            record: dict[str, Any] = {"preset": preset, "method": s.method, "cells": s.n}
            for c in COLUMNS:
                if c in s.mean:
                    record[f"{c}_mean"], record[f"{c}_std"] = round(s.mean[c], 6), round(s.std[c], 6)
            records.append(record)
    return records


def render_csv(rows: list[dict[str, Any]]) -> str:
    records = export_records(rows)
    fields = ["preset", "method", "cells"] + [f"{c}_{k}" for c in COLUMNS for k in ("mean", "std")]
    fields = [f for f in fields if any(f in r for r in records)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def render_json(rows: list[dict[str, Any]]) -> str:
    presets = sorted({r["preset"] for r in rows if r["status"] == "ok"})
    document = {"methods": export_records(rows),
                "provenance": {p: provenance([r for r in rows if r["preset"] == p and r["status"] == "ok"])
                               for p in presets}}
    return json.dumps(document, indent=1) + "\n"


def rich_tables(rows: list[dict[str, Any]]) -> list[Table]:
    """The same aggregation as :func:`render_markdown`, as rich tables for the terminal."""
    tables = []
    for preset, summaries in aggregate(rows).items():
        columns = present_columns(summaries)
        best = {c: best_methods(summaries, c) for c in columns}
        table = Table(title=f"{preset}: mean ± std over seeds and forget classes (bold: best method)",
                      title_justify="left")
        table.add_column("method", style="bold")
        table.add_column("cells", justify="right")
        for c in columns:
            table.add_column(LABELS.get(c, c), justify="right")
        for s in summaries:
            cells = [f"[bold green]{fmt(s, c)}[/]" if s.method in best[c] else fmt(s, c) for c in columns]
            table.add_row(s.method, str(s.n), *cells, style="italic dim" if s.method == ORACLE else None)
        tables.append(table)
    return tables
