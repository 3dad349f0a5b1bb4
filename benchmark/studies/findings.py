"""The README's derived findings, computed from committed rows: the paired comparisons it quotes beyond the
leaderboard's "vs best" table, the mean null spreads, TRW's diagnostics and the robustness probes against
their nulls.

    python -m benchmark.studies.findings [--rows benchmark/results/digits/results.jsonl]

Nothing is trained or scored: the numbers are read from the rows (``tests/test_studies.py`` checks that
the README quotes what this prints).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

from benchmark.engine.callbacks import declared_metrics
from benchmark.report.leaderboard import cell_gaps
from benchmark.report.stats import paired_difference
from benchmark.report.store import read_rows

ROWS = "benchmark/results/digits/results.jsonl"
# the README's claims beyond "vs best": TRW against RWFT, the best prior method and DELETE (its nearest published
# rival); DELETE against RWFT (the same target, without the retain term); UNSIR's utility cost
PAIRS = (("trw", "rwft", "privacy_gap"), ("trw", "amun", "privacy_gap"), ("trw", "delete", "privacy_gap"),
         ("delete", "rwft", "privacy_gap"), ("unsir", "rwft", "TA"))


def per_cell(rows: list[dict], method: str, key: str) -> dict[tuple, float]:
    """One value per (seed, forget classes) of ``method``: a score or a gap."""
    metrics = declared_metrics()

    def value(row: dict) -> float:
        gaps = cell_gaps(row["metrics"], row["oracle"], metrics, protocol=row.get("protocol", 1))
        return gaps[key] if key in gaps else row["metrics"][key]

    return {(r["seed"], tuple(r["forget_classes"])): value(r) for r in rows
            if r["method"] == method and r["status"] == "ok"}

# the robustness probes' claims: a method's score against its own cell's null mean (what retrained models score)
AGAINST_NULL = tuple((m, "relearn_FTA_k1") for m in ("unsc", "l2ul", "scar")) + (("sfron", "relearn_FTA_k10"),) + \
    tuple((m, "repr_FTA") for m in ("l2ul", "unsc", "scar", "sfron", "uam"))


def findings(rows: list[dict]) -> list[str]:
    """The lines the README's Findings quote, each computed here."""
    lines = []
    for a, b, key in PAIRS:
        d = paired_difference(per_cell(rows, a, key), per_cell(rows, b, key))
        lines.append(f"{a} - {b}, {key}: {d.mean:+.2f} [{d.ci_low:.2f}, {d.ci_high:.2f}] over {d.cells} cells / "
                     f"{d.seeds} seeds, sign-flip p = {d.p:.3g}")
    oracle = {(r["seed"], tuple(r["forget_classes"])): r["oracle"] for r in rows if r["status"] == "ok"}.values()
    mean: Callable[[str], float] = lambda k: statistics.fmean(o[k] for o in oracle)  # noqa: E731
    lines.append(f"mean null sd per cell: MIA-NN {mean('MIA_NN_null_sd'):.1f}, U-LiRA {mean('ULiRA_null_sd'):.1f}")
    trw = [r["diagnostics"] for r in rows if r["method"] == "trw" and r["status"] == "ok"]
    tilt = [d["tilt_tv"] for d in trw]
    lines.append(f"trw tilt_tv: mean {statistics.fmean(tilt):.3f} (min {min(tilt):.3f}, max {max(tilt):.3f}); "
                 f"similarity_redundancy: mean {statistics.fmean(d['similarity_redundancy'] for d in trw):.2f}")
    lines.append(f"cell time: {sum(r['diagnostics']['cell_s'] for r in rows) / 60:.0f} minutes over {len(rows)} rows")
    for method, key in AGAINST_NULL:
        own = per_cell(rows, method, key)
        if not own:
            continue
        d = paired_difference(own, per_cell(rows, method, f"{key}_null_mean"))
        lines.append(f"{method} {key} - its null: {d.mean:+.2f} [{d.ci_low:.2f}, {d.ci_high:.2f}] over {d.cells} "
                     f"cells / {d.seeds} seeds, sign-flip p = {d.p:.3g}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=ROWS)
    for line in findings(read_rows(parser.parse_args().rows)):
        print(line)


if __name__ == "__main__":
    main()
