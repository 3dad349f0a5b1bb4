"""One run's scores as a terminal table (``bench score``): every declared score of the unlearned model beside
the oracle's, with the per-cell gaps the leaderboard derives, in the leaderboard's column order."""

from __future__ import annotations

from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

from benchmark.report.leaderboard import Metric, _best_text, ordered


def _value(scores: dict[str, float], key: str) -> str:
    return f"{scores[key]:.2f}" if key in scores else "–"


def scorecard(metrics: dict[str, float], oracle: dict[str, float], gaps: dict[str, dict[str, float]],
              declared: Sequence[Metric], *, title: str, notes: Sequence[str] = ()) -> Table:
    """A table with a line per score present: its label, key, the unlearned model's value, the oracle's, and
    what the leaderboard marks as best.

    Args:
        metrics: the unlearned model's scores (a row's ``metrics``).
        oracle: the oracle's (a row's ``oracle``).
        gaps: ``{"metrics": {...}, "oracle": {...}}``, the avg and privacy gaps of each.
        declared: the score declarations (``benchmark.engine.callbacks.declared_metrics()``).
        title: the table's title.
        notes: lines for the caption (scores that could not be computed, say).
    """
    table = Table(title=title, caption="\n".join(escape(n) for n in notes) or None, title_justify="left",
                  caption_justify="left")
    for name, justify in (("score", "left"), ("key", "left"), ("unlearned", "right"), ("oracle", "right"),
                          ("best", "left")):
        table.add_column(name, justify=justify, style="bold" if name == "score" else None)
    method = metrics | gaps.get("metrics", {})
    retrained = oracle | gaps.get("oracle", {})
    for m in ordered(declared):
        if m.key in method or m.key in retrained:
            table.add_row(escape(m.label), m.key, _value(method, m.key), _value(retrained, m.key),
                          _best_text(m.ideal))
    return table
