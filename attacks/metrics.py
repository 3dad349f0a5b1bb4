"""What a score is: the one declaration the leaderboard, the ``--verbose`` line, the README's score
table and the tests read. Each callback lists the scores it writes in its ``metrics`` class attribute.

``ideal`` says what a perfect unlearning method scores: ``"oracle"`` (match the retrained oracle),
``"low"``, ``"high"``, or a number.
"""

from __future__ import annotations

from dataclasses import dataclass

UNITS = ("%", "fraction", "AUC", "s", "ratio")
IDEALS = ("oracle", "low", "high", "none")  # none: a description of the cell (a null), not ranked
GAPS = (None, "avg", "privacy")
TABLES = ("classic", "privacy", "robustness")  # the leaderboard's tables, in this order


@dataclass(frozen=True)
class MetricInfo:
    """One score of a result row (``row["metrics"][key]``, and the same for ``row["oracle"]``).

    Args:
        key: the name in the row.
        label: the name people read (leaderboard header, ``--verbose`` line).
        unit: ``%``, ``fraction``, ``AUC``, ``s`` or ``ratio``.
        ideal: ``oracle``, ``low``, ``high`` or a number: what the leaderboard marks as best; ``none`` for
            a number that describes the cell rather than the method (a null's mean or sd): never ranked.
        meaning: one line for the README's score table.
        column: a leaderboard column, also in its CSV and JSON exports (the others stay in the rows).
        gap: ``avg`` or ``privacy``: the per-cell gap the score enters, or None.
        reference: what a gap member is compared with in its cell: None = the cell's oracle value; a number
            (50 for U-LiRA); or the key of another score of the same row (``MIA_NN_null_mean``). A row that
            lacks that key (older protocol) falls back to its oracle's value.
        table: which leaderboard table shows the column: ``classic`` (accuracy and the classic metrics),
            ``privacy`` (the attacks) or ``robustness`` (probes that train on the unlearned model).
    """

    key: str
    label: str
    unit: str
    ideal: str | float
    meaning: str
    column: bool = False
    gap: str | None = None
    reference: str | float | None = None
    table: str = "classic"

    def __post_init__(self) -> None:
        # a typo here would silently drop a column or a gap member, so it fails at import
        if self.unit not in UNITS:
            raise ValueError(f"metric {self.key!r}: unit {self.unit!r} is not one of {', '.join(UNITS)}")
        numeric = isinstance(self.ideal, int | float) and not isinstance(self.ideal, bool)
        if not numeric and self.ideal not in IDEALS:
            raise ValueError(f"metric {self.key!r}: ideal {self.ideal!r} is not a number or one of {', '.join(IDEALS)}")
        if self.column and self.ideal == "none":
            raise ValueError(f"metric {self.key!r}: a leaderboard column needs an ideal to mark the best by")
        if self.gap not in GAPS:
            raise ValueError(f"metric {self.key!r}: gap {self.gap!r} is not None, 'avg' or 'privacy'")
        if self.table not in TABLES:
            raise ValueError(f"metric {self.key!r}: table {self.table!r} is not one of {', '.join(TABLES)}")
