import csv
import io
import json
import statistics
from pathlib import Path

import pytest

from attacks import MetricInfo
from benchmark.cli import figure_links, main
from benchmark.engine.callbacks import declared_metrics
from benchmark.report.leaderboard import (
    aggregate,
    best_methods,
    cell_gaps,
    columns,
    render_csv,
    render_json,
    render_markdown,
    render_metric_table,
)
from benchmark.report.store import read_rows

METRICS = declared_metrics()


def row(method, fc, seed, metrics, oracle, status="ok"):
    return {"preset": "p", "dataset": "d", "model": "m", "method": method, "forget_classes": fc, "seed": seed,
            "status": status, "metrics": metrics, "oracle": oracle, "hparams": {}, "config_hash": f"{method}{fc}{seed}",
            "split_hash": "s", "version": "0.1.0", "started": "t0", "finished": f"2026-01-0{seed + 1}"}


ORACLE_A = {"UA": 100.0, "FTA": 0.0, "RA": 99.0, "TA": 97.0}
ORACLE_B = {"UA": 98.0, "FTA": 2.0, "RA": 98.0, "TA": 96.0}
ROWS = [
    row("ft", [3], 0, {"UA": 90.0, "FTA": 10.0, "RA": 99.0, "TA": 97.0}, ORACLE_A),
    row("ft", [8], 1, {"UA": 80.0, "FTA": 22.0, "RA": 98.0, "TA": 92.0}, ORACLE_B),
    row("original", [3], 0, {"UA": 0.0, "FTA": 100.0, "RA": 100.0, "TA": 98.0}, ORACLE_A),
    row("original", [8], 1, {"UA": 0.0, "FTA": 100.0, "RA": 100.0, "TA": 98.0}, ORACLE_B),
    row("ga", [3], 0, {}, ORACLE_A, status="diverged"),
]


def test_cell_gap_is_mean_absolute_difference():
    gaps = cell_gaps({"UA": 90.0, "FTA": 10.0, "RA": 99.0, "TA": 97.0}, ORACLE_A, METRICS)
    assert gaps == {"avg_gap": pytest.approx((10 + 10 + 0 + 0) / 4)}
    assert cell_gaps({"MIA_NN": 60.0, "ULiRA": 52.0}, {"MIA_NN": 55.0, "ULiRA": 50.0},
                     METRICS) == {"privacy_gap": 3.5}


def test_mean_std_over_cells_and_gaps_per_cell():
    table = aggregate(ROWS, METRICS)["p"]
    ft = next(s for s in table if s.method == "ft")
    assert ft.n == 2
    assert ft.mean["UA"] == 85.0 and ft.std["UA"] == pytest.approx(statistics.stdev([90.0, 80.0]))
    # gaps are taken against each cell's own oracle, then averaged
    gap_a, gap_b = (10 + 10 + 0 + 0) / 4, (18 + 20 + 0 + 4) / 4
    assert ft.mean["avg_gap"] == pytest.approx((gap_a + gap_b) / 2)


def test_oracle_row_first_deduplicated_and_ordering_by_gap():
    table = aggregate(ROWS, METRICS)["p"]
    assert [s.method for s in table] == ["oracle", "ft", "original"]
    oracle = table[0]
    assert oracle.n == 2 and oracle.mean["UA"] == 99.0 and oracle.mean["avg_gap"] == 0.0
    assert all(s.method != "ga" for s in table)  # diverged rows are not averaged in


def test_single_cell_std_is_zero_and_markdown_is_deterministic():
    text = render_markdown(ROWS[:1], METRICS, command="bench leaderboard --runs x")
    assert "| ft | 1 | **90.00 ± 0.00** |" in text  # the only contender is the best
    assert "`bench leaderboard --runs x`" in text and "2026-01-01" in text
    assert render_markdown(ROWS[:1], METRICS, command="bench leaderboard --runs x") == text


def test_empty_rows_render_a_hint():
    assert "bench run" in render_markdown([], METRICS)


def test_best_is_nearest_the_oracle_for_scores_and_lowest_for_gaps_baselines_excluded():
    oracle = {"UA": 100.0, "TA": 97.0, "MIA_NN": 55.0, "ULiRA": 50.0}
    rows = [row("a", [3], 0, {"UA": 96.0, "TA": 99.0, "MIA_NN": 60.0, "ULiRA": 70.0}, oracle),
            row("b", [3], 0, {"UA": 99.0, "TA": 90.0, "MIA_NN": 52.0, "ULiRA": 80.0}, oracle),
            row("retrain", [3], 0, dict(oracle), oracle), row("original", [3], 0, {"UA": 0.0, "TA": 97.0}, oracle)]
    table = aggregate(rows, METRICS)["p"]
    assert best_methods(table, "UA", METRICS) == {"b"}  # |99-100| < |96-100|; retrain (0 away) is a baseline
    assert best_methods(table, "TA", METRICS) == {"a"}  # |99-97| < |90-97|, although 99 is not the highest possible
    assert best_methods(table, "MIA_NN", METRICS) == {"b"}  # |52-55| < |60-55|: nearest, not lowest
    # privacy gaps: a = (5 + 20) / 2 = 12.5, b = (3 + 30) / 2 = 16.5
    assert best_methods(table, "privacy_gap", METRICS) == {"a"}
    assert [s.method for s in table] == ["oracle", "retrain", "a", "b", "original"]  # sorted by privacy gap
    text = render_markdown(rows, METRICS)
    assert "| b | 1 | **99.00 ± 0.00** |" in text and "| retrain | 1 | 100.00 ± 0.00 |" in text


def test_columns_come_from_the_declarations_in_the_committed_order():
    assert [c.key for c in columns(METRICS)] == ["UA", "FTA", "RA", "TA", "MIA_eff", "TV", "MIA_NN", "ULiRA",
                                                 "avg_gap", "privacy_gap", "time_s"]


def test_best_follows_each_metrics_declared_ideal():
    metrics = [MetricInfo(key, key.title(), "%", ideal, "", column=key != "hidden")
               for key, ideal in (("hi", "high"), ("near", 50.0), ("lo", "low"), ("hidden", "low"))]
    rows = [row("a", [3], 0, {"hi": 90.0, "near": 60.0, "lo": 2.0, "hidden": 1.0}, {}),
            row("b", [3], 0, {"hi": 80.0, "near": 45.0, "lo": 1.0, "hidden": 2.0}, {})]
    table = aggregate(rows, metrics)["p"]
    assert best_methods(table, "hi", metrics) == {"a"}  # highest
    assert best_methods(table, "near", metrics) == {"b"}  # |45-50| < |60-50|
    assert best_methods(table, "lo", metrics) == {"b"}  # lowest
    # labels from the declaration; no gap column, since no metric enters a gap; column=False is not shown
    assert "| method | cells | Hi | Near | Lo |\n" in render_markdown(rows, metrics)


def test_readme_score_table_is_rendered_from_the_declarations():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- metrics:begin -->\n")[1].split("<!-- metrics:end -->")[0]
    assert block == render_metric_table(METRICS), "README's score table is stale: paste render_metric_table's output"


def test_ties_at_printed_precision_are_all_marked():
    oracle = {"UA": 100.0}
    rows = [row("a", [3], 0, {"UA": 98.001}, oracle), row("b", [3], 0, {"UA": 98.0}, oracle)]
    assert best_methods(aggregate(rows, METRICS)["p"], "UA", METRICS) == {"a", "b"}


def test_csv_and_json_hold_the_same_aggregation_as_the_markdown():
    table = {s.method: s for s in aggregate(ROWS, METRICS)["p"]}
    records = list(csv.DictReader(io.StringIO(render_csv(ROWS, METRICS))))
    assert [r["method"] for r in records] == [s for s in table]
    ft = next(r for r in records if r["method"] == "ft")
    assert float(ft["UA_mean"]) == 85.0 and float(ft["UA_std"]) == pytest.approx(statistics.stdev([90.0, 80.0]))
    document = json.loads(render_json(ROWS, METRICS))
    assert document["methods"][0]["method"] == "oracle" and document["methods"][0]["cells"] == 2
    assert document["provenance"]["p"]["seeds"] == [0, 1] and document["provenance"]["p"]["rows"] == 4


def test_commands_that_wrote_the_rows_are_listed_under_the_table():
    rows = [r | {"command": f"bench run --seeds {r['seed']}"} for r in ROWS]
    text = render_markdown(rows, METRICS)
    assert "`bench run --seeds 0`" in text and "`bench run --seeds 1`" in text
    assert "The 2 commands that wrote the rows" in text


def test_leaderboard_command_writes_markdown_exports_and_figures(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    diagnostics = {"forget_destination": {"method": [0.1] * 10, "oracle": [0.2] * 10},
                   "ulira_scores": {"method": [1.0, 2.0], "oracle": [-1.0, 0.5]}}
    rows = [r | {"diagnostics": diagnostics, "metrics": r["metrics"] | {"MIA_NN": 60.0, "ULiRA": 55.0},
                 "oracle": r["oracle"] | {"MIA_NN": 50.0, "ULiRA": 50.0}} for r in ROWS]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "board" / "leaderboard.md"
    assert main(["leaderboard", "--runs", str(run), "--output", str(out)]) == 0
    for name in ("leaderboard.csv", "leaderboard.json", "leaderboard-privacy-vs-accuracy.png",
                 "leaderboard-forget-destination.png", "leaderboard-ulira-scores.png"):
        assert (out.parent / name).stat().st_size > 0, name
    assert "](leaderboard-forget-destination.png)" in out.read_text()
    assert main(["leaderboard", "--runs", str(run), "--output", str(out), "--check"]) == 0
    out.with_suffix(".csv").write_text("edited by hand\n")
    assert main(["leaderboard", "--runs", str(run), "--output", str(out), "--check"]) == 1


def test_committed_leaderboard_is_reproduced_from_the_committed_rows():
    root = Path(__file__).resolve().parents[1]
    runs = [root / "benchmark" / "results" / p for p in ("digits", "mnist5k")]
    rows = [r for d in runs for r in read_rows(d / "results.jsonl")]
    command = "bench leaderboard --runs benchmark/results/digits benchmark/results/mnist5k"
    markdown = render_markdown(rows, METRICS, command=command, figures=figure_links())
    assert markdown == (root / "leaderboard.md").read_text()
    assert render_csv(rows, METRICS) == (root / "leaderboard.csv").read_text()
    assert render_json(rows, METRICS) == (root / "leaderboard.json").read_text()


# The README's Findings quote these means (one decimal) from the committed rows; this keeps them honest.
README_FINDINGS = [
    ("digits", "oracle", "MIA_NN", 54.4), ("mnist5k", "oracle", "MIA_NN", 56.5),
    ("digits", "original", "MIA_NN", 93.0), ("mnist5k", "original", "MIA_NN", 96.0),
    ("digits", "trw", "MIA_NN", 62.8), ("digits", "rl", "MIA_NN", 88.5),
    ("mnist5k", "trw", "MIA_NN", 68.4), ("mnist5k", "rl", "MIA_NN", 91.1),
    ("digits", "scrub", "privacy_gap", 20.9), ("digits", "trw", "privacy_gap", 22.1),
    ("digits", "rwft", "privacy_gap", 21.8), ("digits", "amun", "MIA_NN", 57.6),
    ("mnist5k", "scrub", "privacy_gap", 28.1), ("mnist5k", "trw", "privacy_gap", 28.5),
    ("mnist5k", "neggrad_plus", "privacy_gap", 25.9),
]


@pytest.mark.parametrize(("preset", "method", "column", "quoted"), README_FINDINGS)
def test_figures_quoted_in_the_readme_match_the_committed_rows(preset, method, column, quoted):
    root = Path(__file__).resolve().parents[1]
    rows = read_rows(root / "benchmark" / "results" / preset / "results.jsonl")
    summary = next(s for s in aggregate(rows, METRICS)[preset] if s.method == method)
    assert round(summary.mean[column], 1) == quoted
    assert f"{quoted}" in (root / "README.md").read_text()
