"""The leaderboard: a pure function of result rows.

Rows are grouped by preset and method. A cell is one (seed, forget classes) pair. Each score becomes its
mean over a method's cells with a 95% cluster-bootstrap interval that resamples whole seeds (the cells of
one seed share its original model and reference bank, so they are not independent). The oracle gets a row
of its own, built from the ``oracle`` part of the rows (one per cell). Gaps are computed per cell against
that cell's references (:func:`reference`), then averaged.

In every column the methods tied for best are marked: the best has the lowest mean per-cell distance from
the column's ideal, and another method ties with it unless a paired sign-flip test over their shared
cells, Holm-corrected over the column's contenders, finds it worse. The markdown tables, the rich tables and
the CSV/JSON exports all come from :func:`boards`, so they cannot disagree. A preset's columns are shown in one
table per ``table`` of their declarations (classic scores, privacy attacks, robustness probes), every table
with the same rows in the same order.

What a score is called, which scores are columns, what "best" means and what a gap member is compared with
come from the caller's ``metrics`` (the callbacks' declarations, ``benchmark.engine.callbacks.declared_metrics()``):
this module knows no score by name, so a new attack needs no change here.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from rich.markup import escape
from rich.table import Table

from benchmark.core.errors import ConfigError
from benchmark.core.hashing import config_hash
from benchmark.report.stats import DRAWS, LEVEL, Paired, cluster_bootstrap_ci, holm, paired_difference

ORACLE = "oracle"
BASELINES = (ORACLE, "original", "retrain")  # reference points, not contenders: never marked best
ALPHA = 0.05  # a method is worse than the best where its Holm-adjusted p is below this
FIRST_PROTOCOL = 1  # rows without a "protocol" field were scored before the field existed

Cell = tuple[int, tuple[int, ...]]  # (seed, forget classes); the seed comes first: it is the bootstrap's cluster


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
    @property
    def reference(self) -> str | float | None: ...
    @property
    def table(self) -> str: ...


class ProtocolMixError(ConfigError):
    """One preset's rows were scored under different protocols: their numbers do not compare."""


@dataclass(frozen=True)
class GapColumn:
    """A column the report derives per cell: the mean distance to the cell's references of the metrics
    whose ``gap`` is ``of``. Not declared by a callback, since no callback sees the other callbacks' scores."""

    key: str
    label: str
    of: str
    meaning: str = ""
    unit: str = "%"  # the gap members are percentages: the gaps are percentage points
    ideal: str = "low"
    column: bool = True
    gap: None = None
    reference: None = None
    table: str = "classic"  # the leaderboard table it is shown in, beside the scores it averages


# docs/protocol.md, section 2; which metrics enter each gap is their own declaration (``gap``)
GAP_COLUMNS = (GapColumn("avg_gap", "Avg gap", "avg", table="classic"),
               GapColumn("privacy_gap", "Privacy gap", "privacy", table="privacy"))
AVG_GAP, PRIVACY_GAP = GAP_COLUMNS


def reference_text(metric: Metric, metrics: Sequence[Metric]) -> str:
    """What a metric is compared with, in words: "the oracle", a number, or the label of another score.

    Args:
        metric: the declaration whose ``reference`` is described.
        metrics: every declaration (to name a referenced score by its label).
    """
    if metric.reference is None:
        return "the oracle"
    if isinstance(metric.reference, str):
        return next((m.label for m in metrics if m.key == metric.reference), f"`{metric.reference}`")
    return f"{metric.reference:g}"


def gap_columns(metrics: Sequence[Metric]) -> list[GapColumn]:
    """The gap columns, each described by the labels of the metrics it averages (and their references,
    where a member declares one)."""
    out = []
    for g in GAP_COLUMNS:
        members = [m for m in metrics if m.gap == g.of]
        labels = ", ".join(m.label for m in members)
        meaning = f"mean of abs(method − oracle) over {labels}"
        if any(m.reference is not None for m in members):
            meaning = (f"mean over {labels} of abs(method − reference): from protocol 2 "
                       + ", ".join(f"{m.label} against {reference_text(m, metrics)}" for m in members)
                       + "; in protocol-1 rows each against the cell's oracle")
        out.append(replace(g, meaning=meaning))
    return out


def ordered(metrics: Sequence[Metric]) -> list[Metric]:
    """The metrics with the gaps inserted right after the last metric they average: derived columns sit
    beside their inputs, and the engine's cost metrics (declared last) stay at the end."""
    last = max((i for i, m in enumerate(metrics) if m.gap is not None), default=len(metrics) - 1)
    return [*metrics[:last + 1], *gap_columns(metrics), *metrics[last + 1:]]


def columns(metrics: Sequence[Metric]) -> list[Metric]:
    """Every leaderboard column, in order (present or not in a given set of rows)."""
    return [m for m in ordered(metrics) if m.column]


# -- per cell ----------------------------------------------------------------------------------------------

def protocol_of(row: dict[str, Any]) -> int:
    """The scoring protocol a row was computed under (docs/protocol.md)."""
    return int(row.get("protocol", FIRST_PROTOCOL))


def cell_of(row: dict[str, Any]) -> Cell:
    return row["seed"], tuple(row["forget_classes"])


def reference(metric: Metric, scores: dict[str, float], oracle: dict[str, float], protocol: int) -> float | None:
    """What ``metric``'s value in one cell is compared with (its gap's and its column's target), or None.

    Protocol-1 rows predate the references and keep the oracle's value, as they were scored. From protocol 2
    the declaration decides: None is the cell's oracle value, a number is itself, and a key names another
    score of the same row, the oracle's value standing in where the row lacks that key.

    Args:
        metric: the declaration.
        scores: the row's scores (the oracle's own, for the oracle's row).
        oracle: the cell's oracle scores.
        protocol: the row's protocol.
    """
    if protocol <= FIRST_PROTOCOL or metric.reference is None:
        return oracle.get(metric.key)
    if isinstance(metric.reference, str):
        return scores.get(metric.reference, oracle.get(metric.key))
    return float(metric.reference)


def cell_gaps(scores: dict[str, float], oracle: dict[str, float], metrics: Sequence[Metric], *,
              protocol: int) -> dict[str, float]:
    """Avg gap and privacy gap of one cell: the mean over each gap's members of abs(value − reference).

    For the oracle's own row (``scores`` is ``oracle``) a member compared with its oracle value is 0, and
    one compared with a number or a null is the oracle's own distance from it: the attack's noise floor.

    Args:
        scores: the cell's scores.
        oracle: the cell's oracle scores.
        metrics: the declarations (which scores enter which gap, and their references).
        protocol: the row's protocol (see :func:`reference`).
    """
    out = {}
    for g in GAP_COLUMNS:
        diffs = [abs(scores[m.key] - ref) for m in metrics if m.gap == g.of and m.key in scores
                 and (ref := reference(m, scores, oracle, protocol)) is not None]
        if diffs:
            out[g.key] = sum(diffs) / len(diffs)
    return out


def badness(column: Metric, scores: dict[str, float], oracle: dict[str, float], protocol: int) -> float | None:
    """How far one cell's value in ``column`` is from the best it could be (smaller is better), or None.

    abs(value − target) for an ideal of "oracle" or a number; the value itself for "low"; minus it for "high".
    The target is the cell's :func:`reference` for "oracle" and for a column that declares a reference (so
    that a column and its gap agree, protocol-1 rows included); otherwise the declared number.

    Args:
        column: the column's declaration.
        scores: the cell's scores, gaps included.
        oracle: the cell's oracle scores.
        protocol: the row's protocol.
    """
    value = scores[column.key]
    if column.ideal == "low":
        return value
    if column.ideal == "high":
        return -value
    if column.ideal == "oracle" or column.reference is not None:
        target = reference(column, scores, oracle, protocol)
    else:
        target = float(column.ideal)
    return None if target is None else abs(value - target)


# -- per method --------------------------------------------------------------------------------------------

@dataclass
class Summary:
    """One method on one preset: its scores per cell, and their means and intervals over the cells.

    ``badness`` holds, per column, each cell's :func:`badness`: what the tie marking compares.
    """

    method: str
    cells: dict[Cell, dict[str, float]]
    badness: dict[str, dict[Cell, float]]
    mean: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.cells)

    @property
    def seeds(self) -> int:
        return len({cell[0] for cell in self.cells})


def _badness_by_column(cells: dict[Cell, dict[str, float]], oracles: dict[Cell, dict[str, float]],
                       metrics: Sequence[Metric], protocol: int) -> dict[str, dict[Cell, float]]:
    """Per column (those with a value in some cell), each cell's :func:`badness`."""
    out = {}
    for column in columns(metrics):
        found = {cell: b for cell, scores in cells.items()
                 if column.key in scores and (b := badness(column, scores, oracles[cell], protocol)) is not None}
        if found:
            out[column.key] = found
    return out


def _summarise(method: str, cells: dict[Cell, dict[str, float]], oracles: dict[Cell, dict[str, float]],
               metrics: Sequence[Metric], protocol: int) -> Summary:
    """Means, intervals and per-cell badness of one method's cells (taken in sorted order, so that the row
    order of the files, e.g. of merged shards, changes nothing)."""
    cells = dict(sorted(cells.items()))
    summary = Summary(method, cells, _badness_by_column(cells, oracles, metrics, protocol))
    for key in sorted({k for scores in cells.values() for k in scores}):
        at = [cell for cell, scores in cells.items() if key in scores]
        values = [cells[cell][key] for cell in at]
        summary.mean[key] = statistics.fmean(values)
        summary.ci[key] = cluster_bootstrap_ci(values, [cell[0] for cell in at])
    return summary


def _ok_rows_by_preset(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_preset: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "ok":
            by_preset[row["preset"]].append(row)
    return dict(sorted(by_preset.items()))


def _commands(rows: Sequence[dict[str, Any]], shown: int = 3) -> str:
    """The commands that wrote some rows (their --out names the run directory), the first ``shown`` of them."""
    commands = sorted({r.get("command") or "(command not recorded)" for r in rows})
    more = f" and {len(commands) - shown} more" if len(commands) > shown else ""
    return ", ".join(f"`{c}`" for c in commands[:shown]) + more


def preset_protocol(preset: str, rows: Sequence[dict[str, Any]]) -> int:
    """The one protocol of a preset's ok rows; raise :class:`ProtocolMixError` where they carry several.

    Args:
        preset: the preset's name (for the message).
        rows: its ok rows.
    """
    by_protocol: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_protocol[protocol_of(row)].append(row)
    if len(by_protocol) == 1:
        return next(iter(by_protocol))
    written = "; ".join(f"protocol {p}: {len(rs)} rows, from {_commands(rs)}" for p, rs in sorted(by_protocol.items()))
    versions = " and ".join(str(p) for p in sorted(by_protocol))
    raise ProtocolMixError(f"preset {preset!r} mixes rows of protocol versions {versions}, whose scores do not "
                           f"compare: rescore the older run directories (`bench rescore`) or leave them out of "
                           f"--runs. {written}")


def _preset_summaries(preset: str, rows: Sequence[dict[str, Any]], metrics: Sequence[Metric],
                      protocol: int) -> list[Summary]:
    """One :class:`Summary` per method plus the oracle's, the oracle first, then by mean privacy gap."""
    by_method: dict[str, dict[Cell, dict[str, float]]] = defaultdict(dict)
    oracles: dict[Cell, dict[str, float]] = {}
    for row in rows:
        cell = cell_of(row)
        if cell in by_method[row["method"]]:  # a paired comparison needs one value per cell
            raise ConfigError(f"preset {preset!r}: method {row['method']!r} has two ok rows for seed {cell[0]}, "
                              f"forget classes {list(cell[1])}; pass each run directory once")
        by_method[row["method"]][cell] = row["metrics"] | cell_gaps(row["metrics"], row["oracle"], metrics,
                                                                    protocol=protocol)
        oracles.setdefault(cell, row["oracle"])  # the same oracle for every method of the cell
    summaries = [_summarise(m, cells, oracles, metrics, protocol) for m, cells in by_method.items()]
    summaries.sort(key=lambda s: (s.mean.get(PRIVACY_GAP.key, math.inf), s.mean.get(AVG_GAP.key, math.inf)))
    own = {cell: o | cell_gaps(o, o, metrics, protocol=protocol) for cell, o in oracles.items()}
    return [_summarise(ORACLE, own, oracles, metrics, protocol), *summaries]


def aggregate(rows: Iterable[dict[str, Any]], metrics: Sequence[Metric]) -> dict[str, list[Summary]]:
    """Per preset, one :class:`Summary` per method plus the oracle, sorted by gap (oracle first).

    Args:
        rows: result rows (any status; only ``ok`` rows are aggregated).
        metrics: the declared metrics.
    """
    return {preset: _preset_summaries(preset, preset_rows, metrics, preset_protocol(preset, preset_rows))
            for preset, preset_rows in _ok_rows_by_preset(rows).items()}


def present_columns(summaries: Sequence[Summary], metrics: Sequence[Metric]) -> list[Metric]:
    """The columns that some summary has a value for."""
    return [c for c in columns(metrics) if any(c.key in s.mean for s in summaries)]


def table_groups(shown: Sequence[Metric]) -> dict[str, list[Metric]]:
    """Columns grouped by their ``table``, each group in column order, the groups in the order of their first
    column (the declarations' order decides: this module knows no table by name); empty groups do not exist."""
    groups: dict[str, list[Metric]] = {}
    for c in shown:
        groups.setdefault(c.table, []).append(c)
    return groups


# -- ties for best -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Versus:
    """One contender against a column's best: the paired per-cell difference of badness (contender − best)
    and its Holm-adjusted p."""

    method: str
    paired: Paired
    p_holm: float

    @property
    def tied(self) -> bool:
        return self.p_holm >= ALPHA  # nan (no shared cell) is not tied: nothing says it is as good


@dataclass(frozen=True)
class Ranking:
    """A column's best contender and every other contender's comparison with it."""

    column: str
    best: str
    versus: tuple[Versus, ...]

    @property
    def tied(self) -> set[str]:
        """The best and every contender not significantly worse."""
        return {self.best} | {v.method for v in self.versus if v.tied}


def rank(summaries: Sequence[Summary], column: str) -> Ranking | None:
    """The column's best (lowest mean badness) and the others against it; None without contenders.

    Baselines never compete. Each contender's per-cell badness is paired with the best's over their shared
    cells; the sign-flip p-values are Holm-corrected over the column's contenders.

    Args:
        summaries: one preset's summaries.
        column: a column key.
    """
    contenders = [s for s in summaries if s.method not in BASELINES and column in s.badness]
    if not contenders:
        return None
    best = min(contenders, key=lambda s: statistics.fmean(s.badness[column].values()))
    others = [s for s in contenders if s is not best]
    paired = [paired_difference(s.badness[column], best.badness[column]) for s in others]
    adjusted = holm([p.p for p in paired])
    return Ranking(column, best.method, tuple(Versus(s.method, p, a) for s, p, a in zip(others, paired, adjusted)))


@dataclass
class Board:
    """One preset's table: its protocol, its summaries and, per column, who is tied for best."""

    preset: str
    protocol: int
    summaries: list[Summary]
    rankings: dict[str, Ranking]
    rows: list[dict[str, Any]]  # the ok rows, for the provenance

    def tied(self, column: str) -> set[str]:
        ranking = self.rankings.get(column)
        return ranking.tied if ranking else set()


def boards(rows: Iterable[dict[str, Any]], metrics: Sequence[Metric]) -> list[Board]:
    """Every preset's :class:`Board`, by preset name: what all the renderings read.

    Args:
        rows: result rows (any status; only ``ok`` rows count).
        metrics: the declared metrics.
    """
    out = []
    for preset, preset_rows in _ok_rows_by_preset(rows).items():
        protocol = preset_protocol(preset, preset_rows)
        summaries = _preset_summaries(preset, preset_rows, metrics, protocol)
        rankings = {c.key: r for c in present_columns(summaries, metrics) if (r := rank(summaries, c.key))}
        out.append(Board(preset, protocol, summaries, rankings, preset_rows))
    return out


# -- what the tables say about themselves -------------------------------------------------------------------

PROTOCOL_1_NOTE = ("Protocol 1 rows: gaps against the oracle's single draw; U-LiRA one pair; MIA-NN one subsample. "
                   "Regenerate with `bench run` or `bench rescore` for protocol 2.")


def protocol_note(protocol: int, metrics: Sequence[Metric]) -> str:
    """What a table's gaps are measured against, for the protocol its rows were scored under.

    Args:
        protocol: the table's protocol.
        metrics: the declarations (the privacy gap's members and their references).
    """
    if protocol <= FIRST_PROTOCOL:
        return PROTOCOL_1_NOTE
    against = ", ".join(f"{m.label} against {reference_text(m, metrics)}" for m in metrics if m.gap == PRIVACY_GAP.of)
    return (f"Protocol {protocol} (docs/protocol.md): privacy gap against the nulls ({against}); the oracle's row "
            "holds the oracle's own distance from them, the attacks' noise floor.")


def _interval_note(board: Board) -> str | None:
    """What the intervals can claim where there are too few seeds for the bootstrap to mean much."""
    seeds = {s.seeds for s in board.summaries}
    if 1 in seeds:
        return ("A method with one seed shows its mean alone: the interval resamples seeds, and one seed leaves "
                "nothing to resample.")
    if seeds == {2}:
        # every resample is seed A twice, A and B, or B twice: the 2.5% and 97.5% points are the two seeds' means
        return ("With 2 seeds an interval is the range of the two seeds' means: it shows how far the seeds "
                f"disagree, not {LEVEL:.0%} coverage, and it does not see how the forget classes differ within a "
                "seed. More seeds make it an interval.")
    return None


def _power_note(board: Board) -> str | None:
    """Say so where no contender could test worse than the best whatever its scores: with few cells the
    smallest sign-flip p, times Holm's number of comparisons, stays above ALPHA, and bold means only "not
    shown worse"."""
    tested = [[v.paired.cells for v in r.versus if v.paired.cells] for r in board.rankings.values()]
    tested = [t for t in tested if t]
    if not tested:
        return None
    cells, comparisons = max(max(t) for t in tested), min(len(t) for t in tested)
    floor = min(1.0, comparisons * 2.0 ** (1 - cells))
    if floor < ALPHA:
        return None
    return (f"With {cells} cells per method the smallest two-sided sign-flip p is 2/2^{cells} = "
            f"{2.0 ** (1 - cells):.3f}, and Holm's correction over {_count(comparisons, 'comparison')} lifts it to "
            f"{floor:.2f}: at this size no method can test worse than the best, so bold reads \"not shown worse\", "
            "not \"as good\". The intervals and the comparison under the table say how far apart the methods are.")


def notes(board: Board, metrics: Sequence[Metric]) -> list[str]:
    """The sentences under a table's title: its protocol, and what its intervals and marks can claim."""
    found = [protocol_note(board.protocol, metrics), _interval_note(board), _power_note(board)]
    return [n for n in found if n]


# -- cells of the tables ------------------------------------------------------------------------------------

def interval(mean: float, low: float, high: float) -> str:
    """``mean [low, high]``, or the mean alone where no interval could be claimed (nan ends)."""
    if math.isnan(low) or math.isnan(high):
        return f"{mean:.2f}"
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def fmt(summary: Summary, key: str, bold: bool = False) -> str:
    if key not in summary.mean:
        return "–"
    text = interval(summary.mean[key], *summary.ci[key])
    return f"**{text}**" if bold else text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _p(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"


def _verdict(versus: Versus) -> str:
    if not versus.paired.cells:
        return "no shared cell"
    return "tied" if versus.tied else "worse"


def score_table(board: Board, metrics: Sequence[Metric], table: str | None = None
                ) -> tuple[list[str], list[tuple[list[str], set[int]]]]:
    """A board's score table as text: its header, and per method its cells with the indices of the bold ones.

    Args:
        board: the preset's board.
        metrics: the declarations (columns and labels).
        table: only the columns of this ``table`` (None: every column).
    """
    shown = [c for c in present_columns(board.summaries, metrics) if table is None or c.table == table]
    header = ["method", "cells / seeds", *[c.label for c in shown]]
    body = []
    for s in board.summaries:
        cells = [s.method, f"{s.n} / {s.seeds}", *[fmt(s, c.key) for c in shown]]
        body.append((cells, {i + 2 for i, c in enumerate(shown) if s.method in board.tied(c.key)}))
    return header, body


VERSUS_HEADER = ["method", "cells / seeds", f"difference [{LEVEL:.0%} CI]", "p", "Holm p", "verdict"]
VERSUS_WORDS = (0, len(VERSUS_HEADER) - 1)  # the columns of words, left-aligned


def versus_table(board: Board) -> tuple[str, str, list[list[str]]] | None:
    """Every contender's privacy gap against the best's: a title, what the numbers are, and rows of text;
    None without a contender to compare.

    Args:
        board: the preset's board.
    """
    ranking = board.rankings.get(PRIVACY_GAP.key)
    if ranking is None or not ranking.versus:
        return None
    title = f"{PRIVACY_GAP.label} against the best ({ranking.best})"
    explained = (f"per shared cell, method − {ranking.best}, mean [{LEVEL:.0%} CI over seeds]; p: two-sided paired "
                 f"sign-flip test; Holm over {_count(len(ranking.versus), 'comparison')}; worse where the Holm p "
                 f"< {ALPHA}.")
    rows = [[v.method, f"{v.paired.cells} / {v.paired.seeds}",
             interval(v.paired.mean, v.paired.ci_low, v.paired.ci_high) if v.paired.cells else "–",
             _p(v.paired.p), _p(v.p_holm), _verdict(v)] for v in ranking.versus]
    return title, explained, rows


# -- markdown -----------------------------------------------------------------------------------------------

INTRO = ("Generated by `bench leaderboard` from result rows; do not edit by hand. A cell is one seed and one "
         f"forget-class set. Each score is the mean over a method's cells and, in brackets, its {LEVEL:.0%} "
         f"interval from a cluster bootstrap over seeds ({DRAWS} resamples of whole seeds: the cells of one seed "
         "share its original and reference models, so they are not independent); percent, except TV and "
         "AUCs in [0, 1] and time in seconds. Each preset's columns are split into tables by kind (classic "
         "scores, privacy attacks, and robustness probes where rows have them), each with the same rows in the "
         "same order. Gaps are measured per cell against the cell's references (the note under each preset's "
         "title says which), then averaged; lower is better. Rows are sorted by mean privacy gap. **Bold**: the "
         "unlearning methods tied for best in a column. The best has the lowest mean per-cell distance from the "
         "column's ideal (the reference for the scores, lowest for TV, gaps and time); another method is tied "
         "with it unless a two-sided paired sign-flip test over their shared cells, Holm-corrected over the "
         f"column's methods, gives p < {ALPHA}. The oracle, `original` and `retrain` are reference points and "
         "are not marked. Under each preset's tables, every method's privacy gap is compared with the best's.")


def _markdown_row(cells: Sequence[str], bold: Collection[int] = ()) -> str:
    return "| " + " | ".join(f"**{c}**" if i in bold else c for i, c in enumerate(cells)) + " |"


def _markdown_table(header: Sequence[str], body: Iterable[tuple[Sequence[str], set[int]]],
                    left: Collection[int] = (0,)) -> list[str]:
    """A markdown table; the columns in ``left`` are left-aligned (names, words), the others right-aligned."""
    rule = "|" + "".join("---|" if i in left else "---:|" for i in range(len(header)))
    return [_markdown_row(header), rule, *[_markdown_row(cells, bold) for cells, bold in body]]


def _markdown_board(board: Board, metrics: Sequence[Metric], command: str) -> list[str]:
    lines = [f"## {board.preset}", ""]
    for note in notes(board, metrics):
        lines += [note, ""]
    for table in table_groups(present_columns(board.summaries, metrics)):
        lines += [f"### {board.preset}: {table}", "", *_markdown_table(*score_table(board, metrics, table)), ""]
    versus = versus_table(board)
    if versus:
        title, explained, rows = versus
        body = [(r, set()) for r in rows]
        lines += [f"**{title}**: {explained}", "", *_markdown_table(VERSUS_HEADER, body, left=VERSUS_WORDS), ""]
    return lines + _provenance_lines(provenance(board.rows), command)


def render_markdown(rows: list[dict[str, Any]], metrics: Sequence[Metric], command: str = "bench leaderboard",
                    figures: Sequence[tuple[str, str]] = ()) -> str:
    """leaderboard.md: one table per preset, with what produced it written under each table.

    Args:
        rows: result rows (any status; only ``ok`` rows are aggregated).
        metrics: the declared metrics (their columns, labels, ideals and references).
        command: the command that renders the file (quoted under each table).
        figures: (title, relative path) of pictures to link at the end.
    """
    lines = ["# Leaderboard", "", INTRO, ""]
    found = boards(rows, metrics)
    if not found:
        lines.append("_No finished result rows yet: run `bench run` first._")
    for board in found:
        lines += _markdown_board(board, metrics, command)
    if figures:
        lines += ["## Figures", ""]
        for title, path in figures:
            lines += [f"### {title}", "", f"![{title}]({path})", ""]
    return "\n".join(lines).rstrip() + "\n"


# -- CSV and JSON -------------------------------------------------------------------------------------------

def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)  # None: JSON has no NaN; the CSV cell stays empty


EXPORT_FIELDS = ["preset", "method", "protocol", "cells", "seeds", "column", "mean", "ci_low", "ci_high", "tied"]


def export_records(rows: list[dict[str, Any]], metrics: Sequence[Metric]) -> list[dict[str, Any]]:
    """The tables as flat records, one per preset, method and column: what the CSV and JSON exports hold.

    Args:
        rows: result rows.
        metrics: the declared metrics.
    """
    records = []
    for board in boards(rows, metrics):
        for s in board.summaries:
            for c in present_columns(board.summaries, metrics):
                if c.key not in s.mean:
                    continue
                low, high = s.ci[c.key]
                records.append({"preset": board.preset, "method": s.method, "protocol": board.protocol,
                                "cells": s.n, "seeds": s.seeds, "column": c.key, "mean": _rounded(s.mean[c.key]),
                                "ci_low": _rounded(low), "ci_high": _rounded(high),
                                "tied": s.method in board.tied(c.key)})
    return records


def versus_records(board: Board) -> dict[str, Any]:
    """Per column, its best and every other contender's paired comparison with it (what the bold marks rest on).

    Args:
        board: the preset's board.
    """
    return {column: {"best": r.best, "comparisons": [
        {"method": v.method, "cells": v.paired.cells, "seeds": v.paired.seeds, "mean": _rounded(v.paired.mean),
         "ci_low": _rounded(v.paired.ci_low), "ci_high": _rounded(v.paired.ci_high), "p": _rounded(v.paired.p),
         "p_holm": _rounded(v.p_holm), "tied": v.tied} for v in r.versus]} for column, r in board.rankings.items()}


def render_csv(rows: list[dict[str, Any]], metrics: Sequence[Metric]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(export_records(rows, metrics))
    return out.getvalue()


def render_json(rows: list[dict[str, Any]], metrics: Sequence[Metric]) -> str:
    """leaderboard.json: the records of the CSV, the comparisons with each column's best, the provenance.

    Args:
        rows: result rows.
        metrics: the declared metrics.
    """
    found = boards(rows, metrics)
    document = {"methods": export_records(rows, metrics),
                "versus_best": {b.preset: versus_records(b) for b in found},
                "provenance": {b.preset: provenance(b.rows) for b in found}}
    return json.dumps(document, indent=1) + "\n"


# -- terminal -----------------------------------------------------------------------------------------------

def rich_tables(rows: list[dict[str, Any]], metrics: Sequence[Metric]) -> list[Table]:
    """The same boards as :func:`render_markdown`, as rich tables for the terminal (per preset its score tables,
    the notes under the first, then the privacy gap against the best)."""
    tables = []
    for board in boards(rows, metrics):
        caption = " ".join(notes(board, metrics))  # under the preset's first table only
        for i, group in enumerate(table_groups(present_columns(board.summaries, metrics))):
            tables.append(_rich_scores(board, metrics, group, caption if i == 0 else None))
        versus = versus_table(board)
        if versus:
            title, explained, rows_ = versus
            table = Table(title=title, caption=explained, title_justify="left", caption_justify="left")
            for i, name in enumerate(VERSUS_HEADER):
                table.add_column(name, justify="left" if i in VERSUS_WORDS else "right")
            for r in rows_:
                table.add_row(*map(escape, r))
            tables.append(table)
    return tables


def _rich_scores(board: Board, metrics: Sequence[Metric], group: str, caption: str | None) -> Table:
    """One of a preset's score tables (the columns of ``group``) for the terminal."""
    header, body = score_table(board, metrics, group)
    table = Table(title=f"{board.preset} ({group}): mean [{LEVEL:.0%} CI over seeds] (bold green: tied for best)",
                  caption=caption, title_justify="left", caption_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right", style="bold" if i == 0 else None)
    for cells, bold in body:
        cells = [c.replace(" [", "\n[") for c in cells]  # the interval on a line of its own: no wrap inside it
        table.add_row(*[f"[bold green]{escape(c)}[/]" if i in bold else escape(c) for i, c in enumerate(cells)],
                      style="italic dim" if cells[0] == ORACLE else None)
    return table



# -- provenance and the README ---------------------------------------------------------------------------

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


def _best_text(ideal: str | float) -> str:
    words = {"oracle": "nearest the oracle", "low": "lowest", "high": "highest", "none": "not ranked"}
    return words[ideal] if isinstance(ideal, str) else f"nearest {ideal:g}"


def render_metric_table(metrics: Sequence[Metric]) -> str:
    """README's score table: every declared score in declaration order, then the gaps derived from them."""
    lines = ["| score | key | unit | best | leaderboard | meaning |", "|---|---|---|---|---|---|"]
    for m in [*metrics, *gap_columns(metrics)]:
        cells = (m.label, f"`{m.key}`", m.unit, _best_text(m.ideal), "column" if m.column else "rows only",
                 m.meaning)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
