import csv
import io
import json
from pathlib import Path

import pytest

from attacks import MetricInfo
from benchmark.cli import figure_links, main
from benchmark.core.errors import ConfigError
from benchmark.engine.callbacks import declared_metrics
from benchmark.report.leaderboard import (
    PROTOCOL_1_NOTE,
    ProtocolMixError,
    aggregate,
    boards,
    cell_gaps,
    columns,
    rank,
    render_csv,
    render_json,
    render_markdown,
    render_metric_table,
    rich_tables,
)
from benchmark.report.plots import error_bar
from benchmark.report.store import read_rows

METRICS = declared_metrics()


def row(method, fc, seed, metrics, oracle, status="ok", **extra):
    return {"preset": "p", "dataset": "d", "model": "m", "method": method, "forget_classes": fc, "seed": seed,
            "status": status, "metrics": metrics, "oracle": oracle, "hparams": {}, "config_hash": f"{method}{fc}{seed}",
            "split_hash": "s", "version": "0.1.0", "started": "t0", "finished": f"2026-01-0{seed + 1}", **extra}


ORACLE_A = {"UA": 100.0, "FTA": 0.0, "RA": 99.0, "TA": 97.0}
ORACLE_B = {"UA": 98.0, "FTA": 2.0, "RA": 98.0, "TA": 96.0}
ROWS = [
    row("ft", [3], 0, {"UA": 90.0, "FTA": 10.0, "RA": 99.0, "TA": 97.0}, ORACLE_A),
    row("ft", [8], 1, {"UA": 80.0, "FTA": 22.0, "RA": 98.0, "TA": 92.0}, ORACLE_B),
    row("original", [3], 0, {"UA": 0.0, "FTA": 100.0, "RA": 100.0, "TA": 98.0}, ORACLE_A),
    row("original", [8], 1, {"UA": 0.0, "FTA": 100.0, "RA": 100.0, "TA": 98.0}, ORACLE_B),
    row("ga", [3], 0, {}, ORACLE_A, status="diverged"),
]

# the privacy gap's members as protocol 2 declares them: MIA-NN against its null's mean, U-LiRA against 50
NULLS = [MetricInfo("MIA_NN", "MIA-NN", "%", "oracle", "", column=True, gap="privacy", reference="MIA_NN_null_mean"),
         MetricInfo("ULiRA", "U-LiRA", "%", "oracle", "", column=True, gap="privacy", reference=50.0),
         MetricInfo("MIA_NN_null_mean", "MIA-NN null mean", "%", "oracle", "")]


def summary_of(rows, method, metrics=METRICS, preset="p"):
    return next(s for s in aggregate(rows, metrics)[preset] if s.method == method)


# -- gaps per cell -----------------------------------------------------------------------------------------

def test_cell_gap_is_mean_absolute_difference_to_the_oracle():
    gaps = cell_gaps({"UA": 90.0, "FTA": 10.0, "RA": 99.0, "TA": 97.0}, ORACLE_A, METRICS, protocol=1)
    assert gaps == {"avg_gap": pytest.approx((10 + 10 + 0 + 0) / 4)}
    assert cell_gaps({"MIA_NN": 60.0, "ULiRA": 52.0}, {"MIA_NN": 55.0, "ULiRA": 50.0},
                     METRICS, protocol=1) == {"privacy_gap": 3.5}


def test_gap_references_a_row_key_a_number_or_the_oracle():
    oracle = {"MIA_NN": 55.0, "ULiRA": 40.0, "MIA_NN_null_mean": 53.0}
    scores = {"MIA_NN": 60.0, "ULiRA": 70.0, "MIA_NN_null_mean": 52.0}
    # |60 − 52| (the row's own null mean) and |70 − 50|; the oracle's 55 and 40 play no part
    assert cell_gaps(scores, oracle, NULLS, protocol=2) == {"privacy_gap": (8 + 20) / 2}
    # a row without the null falls back to its oracle's MIA-NN: |60 − 55|
    assert cell_gaps({"MIA_NN": 60.0, "ULiRA": 70.0}, oracle, NULLS, protocol=2) == {"privacy_gap": (5 + 20) / 2}
    # the oracle's own row: its distance from its null and from 50 is the noise floor, not 0
    assert cell_gaps(oracle, oracle, NULLS, protocol=2) == {"privacy_gap": (2 + 10) / 2}
    # a reference of None compares with the oracle: its own row is 0 away
    plain = [MetricInfo("MIA_NN", "MIA-NN", "%", "oracle", "", column=True, gap="privacy")]
    assert cell_gaps(oracle, oracle, plain, protocol=2) == {"privacy_gap": 0.0}


def test_protocol_1_rows_keep_their_gaps_against_the_oracle():
    oracle = {"MIA_NN": 55.0, "ULiRA": 40.0}
    assert cell_gaps({"MIA_NN": 60.0, "ULiRA": 70.0}, oracle, NULLS, protocol=1) == {"privacy_gap": (5 + 30) / 2}
    rows = [row("a", [3], 0, {"MIA_NN": 60.0, "ULiRA": 70.0}, oracle)]  # no "protocol" field: protocol 1
    assert summary_of(rows, "a", NULLS).mean["privacy_gap"] == 17.5
    assert summary_of([r | {"protocol": 2} for r in rows], "a", NULLS).mean["privacy_gap"] == (5 + 20) / 2


def test_a_column_nearest_the_oracle_is_judged_against_the_cells_reference():
    oracle = {"MIA_NN": 55.0, "ULiRA": 50.0, "MIA_NN_null_mean": 50.0}
    # against the oracle's 55, b (52) is nearer; against the rows' null means (58 for a, 50 for b), a is
    rows = [row("a", [3], 0, {"MIA_NN": 60.0, "ULiRA": 50.0, "MIA_NN_null_mean": 58.0}, oracle, protocol=2),
            row("b", [3], 0, {"MIA_NN": 52.0, "ULiRA": 50.0, "MIA_NN_null_mean": 50.0}, oracle, protocol=2)]
    (board,) = boards(rows, NULLS)
    assert board.rankings["MIA_NN"].best == "a"
    (board,) = boards([r | {"protocol": 1} for r in rows], NULLS)
    assert board.rankings["MIA_NN"].best == "b"


# -- means and intervals -----------------------------------------------------------------------------------

def test_mean_and_cluster_interval_over_seeds_and_gaps_per_cell():
    ft = summary_of(ROWS, "ft")
    assert (ft.n, ft.seeds) == (2, 2)
    assert ft.mean["UA"] == 85.0
    # two seeds, one cell each: the bootstrap's ends are the two seeds' values
    assert ft.ci["UA"] == pytest.approx((80.0, 90.0))
    # gaps are taken against each cell's own oracle, then averaged
    gap_a, gap_b = (10 + 10 + 0 + 0) / 4, (18 + 20 + 0 + 4) / 4
    assert ft.mean["avg_gap"] == pytest.approx((gap_a + gap_b) / 2)
    assert ft.ci["avg_gap"] == pytest.approx((gap_a, gap_b))


def test_cells_of_one_seed_are_resampled_together():
    oracle = {"UA": 100.0}
    rows = [row("a", [c], s, {"UA": ua}, oracle) for (s, c, ua) in
            ((0, 1, 90.0), (0, 2, 92.0), (1, 1, 80.0), (1, 2, 70.0), (2, 1, 99.0), (2, 2, 97.0))]
    a = summary_of(rows, "a")
    assert (a.n, a.seeds) == (6, 3)
    low, high = a.ci["UA"]
    # a resample is three seeds: its mean lies between the lowest and the highest seed mean (75 and 98)
    assert 75.0 <= low < a.mean["UA"] < high <= 98.0


def test_oracle_row_first_deduplicated_and_ordering_by_gap():
    table = aggregate(ROWS, METRICS)["p"]
    assert [s.method for s in table] == ["oracle", "ft", "original"]
    oracle = table[0]
    assert oracle.n == 2 and oracle.mean["UA"] == 99.0 and oracle.mean["avg_gap"] == 0.0
    assert all(s.method != "ga" for s in table)  # diverged rows are not averaged in


def test_one_seed_prints_the_mean_alone_and_says_why():
    text = render_markdown(ROWS[:1], METRICS, command="bench leaderboard --runs x")
    assert "| method | cells / seeds | UA |" in text
    assert "| ft | 1 / 1 | **90.00** |" in text  # the only contender is tied for best with itself
    assert "one seed leaves nothing to resample" in text
    assert "`bench leaderboard --runs x`" in text and "2026-01-01" in text
    assert render_markdown(ROWS[:1], METRICS, command="bench leaderboard --runs x") == text


def test_two_seeds_print_the_interval_and_say_what_it_is():
    text = render_markdown(ROWS, METRICS)
    assert "| ft | 2 / 2 | **85.00 [80.00, 90.00]** |" in text
    assert "With 2 seeds an interval is the range of the two seeds' means" in text


def test_empty_rows_render_a_hint():
    assert "bench run" in render_markdown([], METRICS)


def test_a_cell_given_twice_is_refused():
    with pytest.raises(ConfigError, match="'ft' has two ok rows for seed 0, forget classes \\[3\\]"):
        aggregate([ROWS[0], ROWS[0]], METRICS)


# -- tied for best -----------------------------------------------------------------------------------------

def grid_rows(method, ua_of_cell, oracle_ua=100.0):
    """Eight cells (4 seeds x 2 forget classes): enough for the sign-flip test to reject (2/2^8 per test)."""
    return [row(method, [c], s, {"UA": ua_of_cell(s, c)}, {"UA": oracle_ua}) for s in range(4) for c in (1, 2)]


def test_contenders_not_significantly_worse_are_tied_with_the_best():
    rows = [*grid_rows("a", lambda s, c: 99.0 - 0.1 * s),  # nearest the oracle's 100: the best
            *grid_rows("b", lambda s, c: 98.0 + (0.5 if c == 1 else -0.5) * 3),  # worse on average, not always
            *grid_rows("c", lambda s, c: 90.0 + s),  # worse in every cell: p = 2/256, Holm 2 x that
            *grid_rows("retrain", lambda s, c: 100.0)]  # perfect, but a baseline
    (board,) = boards(rows, METRICS)
    ranking = board.rankings["UA"]
    assert ranking.best == "a"
    versus = {v.method: v for v in ranking.versus}
    assert set(versus) == {"b", "c"}  # baselines never compete
    assert versus["c"].paired.p == pytest.approx(2 / 256) and versus["c"].p_holm == pytest.approx(2 * 2 / 256)
    assert not versus["c"].tied and versus["b"].tied
    assert board.tied("UA") == {"a", "b"}
    text = render_markdown(rows, METRICS)
    assert "| a | 8 / 4 | **" in text and "| b | 8 / 4 | **" in text
    assert "| c | 8 / 4 | 91.50 [" in text and "| retrain | 8 / 4 | 100.00 [100.00, 100.00] |" in text
    assert "no method can test worse" not in text  # 8 cells and 2 comparisons: one can


def test_few_cells_are_said_to_leave_every_contender_tied():
    rows = [*[r for r in grid_rows("a", lambda s, c: 99.0) if r["seed"] < 2],
            *[r for r in grid_rows("c", lambda s, c: 90.0) if r["seed"] < 2]]
    (board,) = boards(rows, METRICS)
    assert board.tied("UA") == {"a", "c"}  # 4 cells: the smallest p is 2/16 = 0.125
    assert "With 4 cells per method the smallest two-sided sign-flip p is 2/2^4 = 0.125" in render_markdown(rows,
                                                                                                           METRICS)


def test_privacy_gap_against_the_best_is_tabled_under_the_scores():
    oracle = {"MIA_NN": 50.0, "ULiRA": 50.0}
    rows = [row(m, [c], s, {"MIA_NN": 50.0 + gap + s, "ULiRA": 50.0 + gap}, oracle)
            for m, gap in (("a", 2.0), ("b", 10.0)) for s in range(4) for c in (1, 2)]
    text = render_markdown(rows, METRICS)
    assert "**Privacy gap against the best (a)**: per shared cell, method − a," in text
    # b − a: MIA-NN 8 points further, U-LiRA 8 points further, in every cell
    assert "| b | 8 / 4 | 8.00 [8.00, 8.00] | 0.008 | 0.008 | worse |" in text
    document = json.loads(render_json(rows, METRICS))
    (b,) = document["versus_best"]["p"]["privacy_gap"]["comparisons"]
    assert document["versus_best"]["p"]["privacy_gap"]["best"] == "a"
    assert (b["method"], b["mean"], b["p"], b["tied"]) == ("b", 8.0, round(2 / 256, 6), False)


def test_best_follows_each_metrics_declared_ideal():
    metrics = [MetricInfo(key, key.title(), "%", ideal, "", column=key != "hidden")
               for key, ideal in (("hi", "high"), ("near", 50.0), ("lo", "low"), ("hidden", "low"))]
    rows = [row("a", [3], 0, {"hi": 90.0, "near": 60.0, "lo": 2.0, "hidden": 1.0}, {}),
            row("b", [3], 0, {"hi": 80.0, "near": 45.0, "lo": 1.0, "hidden": 2.0}, {})]
    summaries = aggregate(rows, metrics)["p"]
    assert rank(summaries, "hi").best == "a"  # highest
    assert rank(summaries, "near").best == "b"  # |45-50| < |60-50|
    assert rank(summaries, "lo").best == "b"  # lowest
    # labels from the declaration; no gap column, since no metric enters a gap; column=False is not shown
    assert "| method | cells / seeds | Hi | Near | Lo |\n" in render_markdown(rows, metrics)


def test_best_is_nearest_the_oracle_for_scores_and_lowest_for_gaps_baselines_excluded():
    oracle = {"UA": 100.0, "TA": 97.0, "MIA_NN": 55.0, "ULiRA": 50.0}
    rows = [row("a", [3], 0, {"UA": 96.0, "TA": 99.0, "MIA_NN": 60.0, "ULiRA": 70.0}, oracle),
            row("b", [3], 0, {"UA": 99.0, "TA": 90.0, "MIA_NN": 52.0, "ULiRA": 80.0}, oracle),
            row("retrain", [3], 0, dict(oracle), oracle), row("original", [3], 0, {"UA": 0.0, "TA": 97.0}, oracle)]
    table = aggregate(rows, METRICS)["p"]
    assert rank(table, "UA").best == "b"  # |99-100| < |96-100|; retrain (0 away) is a baseline
    assert rank(table, "TA").best == "a"  # |99-97| < |90-97|, although 99 is not the highest possible
    assert rank(table, "MIA_NN").best == "b"  # |52-55| < |60-55|: nearest, not lowest
    # privacy gaps: a = (5 + 20) / 2 = 12.5, b = (3 + 30) / 2 = 16.5
    assert rank(table, "privacy_gap").best == "a"
    assert [s.method for s in table] == ["oracle", "retrain", "a", "b", "original"]  # sorted by privacy gap


def test_identical_contenders_are_all_tied():
    rows = [*grid_rows("a", lambda s, c: 98.0), *grid_rows("b", lambda s, c: 98.0)]
    assert boards(rows, METRICS)[0].tied("UA") == {"a", "b"}


def test_each_kind_of_score_gets_its_own_table_with_the_same_rows():
    oracle = {"UA": 100.0, "MIA_NN": 50.0, "ULiRA": 50.0}
    rows = [row(m, [c], s, {"UA": 100.0 - gap, "MIA_NN": 50.0 + gap + s, "ULiRA": 50.0 + gap}, oracle)
            for m, gap in (("b", 10.0), ("a", 2.0)) for s in range(4) for c in (1, 2)]
    text = render_markdown(rows, METRICS)
    preset = text.split("## p\n")[1]
    classic, privacy = preset.split("### p: classic\n")[1].split("### p: privacy\n")
    # each table its own columns, each gap with its kind; no table for a kind without columns (robustness)
    assert "| method | cells / seeds | UA | Avg gap |\n" in classic and "MIA-NN" not in classic
    assert "| method | cells / seeds | MIA-NN | U-LiRA | Privacy gap |\n" in privacy
    assert "### p: robustness" not in text
    # the same rows in the same order (by privacy gap) in both; the notes and the comparison once per preset
    order = [[line.split(" | ")[0] for line in part.splitlines() if line.startswith("| ") and "---" not in line][1:]
             for part in (classic, privacy.split("**Privacy gap against")[0])]
    assert order[0] == order[1] == ["| oracle", "| a", "| b"]
    assert preset.count("Protocol 1 rows") == 1 and preset.count("**Privacy gap against the best (a)**") == 1
    assert preset.index("### p: privacy") < preset.index("**Privacy gap against the best")
    titles = [t.title.split(":")[0] for t in rich_tables(rows, METRICS)]
    assert titles == ["p (classic)", "p (privacy)", "Privacy gap against the best (a)"]


def test_columns_come_from_the_declarations_in_the_committed_order():
    assert [c.key for c in columns(METRICS)] == ["UA", "FTA", "RA", "TA", "MIA_eff", "TV", "MIA_NN", "ULiRA",
                                                 "avg_gap", "privacy_gap", "RMIA_AUC", "relearn_FTA_retain",
                                                 "relearn_FTA_k10", "repr_FTA", "time_s"]


# -- protocols ---------------------------------------------------------------------------------------------

def test_a_preset_mixing_protocols_is_refused(tmp_path, capsys):
    rows = [ROWS[0] | {"command": "bench run --out runs/old"},
            ROWS[1] | {"protocol": 2, "command": "bench run --out runs/new"}]
    with pytest.raises(ProtocolMixError, match="preset 'p' mixes rows of protocol versions 1 and 2") as caught:
        render_markdown(rows, METRICS)
    assert isinstance(caught.value, ConfigError)
    assert "`bench run --out runs/old`" in str(caught.value) and "`bench run --out runs/new`" in str(caught.value)
    # the command line says so and exits 2, as for any mistake the user can fix
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["leaderboard", "--runs", str(run), "--output", str(tmp_path / "lb.md"), "--no-figures"]) == 2
    assert "mixes rows of protocol versions 1 and 2" in " ".join(capsys.readouterr().err.split())


def test_presets_of_different_protocols_render_side_by_side_with_their_notes():
    newer = [r | {"preset": "q", "protocol": 2} for r in ROWS]
    text = render_markdown(ROWS + newer, NULLS + list(METRICS[:4]))
    p_part, q_part = text.split("## p\n")[1].split("## q\n")
    assert PROTOCOL_1_NOTE in p_part and "Protocol 2" not in p_part
    assert ("Protocol 2 (docs/protocol.md): privacy gap against the nulls (MIA-NN against MIA-NN null mean, "
            "U-LiRA against 50)") in q_part
    records = list(csv.DictReader(io.StringIO(render_csv(ROWS + newer, METRICS))))
    assert {(r["preset"], r["protocol"]) for r in records} == {("p", "1"), ("q", "2")}


# -- exports, terminal, figure -----------------------------------------------------------------------------

def test_csv_and_json_hold_the_same_aggregation_as_the_markdown():
    table = {s.method: s for s in aggregate(ROWS, METRICS)["p"]}
    records = list(csv.DictReader(io.StringIO(render_csv(ROWS, METRICS))))
    assert list(dict.fromkeys(r["method"] for r in records)) == list(table)
    ft = next(r for r in records if r["method"] == "ft" and r["column"] == "UA")
    assert (float(ft["mean"]), float(ft["ci_low"]), float(ft["ci_high"])) == (85.0, 80.0, 90.0)
    assert (ft["cells"], ft["seeds"], ft["protocol"], ft["tied"]) == ("2", "2", "1", "True")
    assert next(r for r in records if r["method"] == "original" and r["column"] == "UA")["tied"] == "False"
    document = json.loads(render_json(ROWS, METRICS))
    assert [r for r in document["methods"]] == [
        {k: (json.loads(v.lower()) if k in ("cells", "seeds", "protocol", "tied") else
             (float(v) if k in ("mean", "ci_low", "ci_high") else v)) for k, v in r.items()} for r in records]
    assert document["versus_best"]["p"]["UA"] == {"best": "ft", "comparisons": []}
    assert document["provenance"]["p"]["seeds"] == [0, 1] and document["provenance"]["p"]["rows"] == 4


def test_one_seed_leaves_the_interval_empty_in_the_exports():
    (record, *_) = list(csv.DictReader(io.StringIO(render_csv(ROWS[:1], METRICS))))
    assert record["ci_low"] == record["ci_high"] == ""
    assert json.loads(render_json(ROWS[:1], METRICS))["methods"][0]["ci_low"] is None


def test_rich_tables_show_the_scores_and_the_comparison():
    oracle = {"MIA_NN": 50.0, "ULiRA": 50.0}
    rows = [row(m, [1], s, {"MIA_NN": 50.0 + gap, "ULiRA": 50.0 + gap}, oracle)
            for m, gap in (("a", 2.0), ("b", 10.0)) for s in range(2)]
    scores, versus = rich_tables(rows, METRICS)  # MIA-NN, U-LiRA and their gap: the privacy table alone
    assert scores.title.startswith("p (privacy): mean [95% CI over seeds]") and "Protocol 1 rows" in scores.caption
    assert versus.title == "Privacy gap against the best (a)" and "Holm over 1 comparison;" in versus.caption
    assert [c.header for c in versus.columns][-1] == "verdict"


def test_privacy_plot_error_bars_are_the_intervals():
    ft = summary_of(ROWS, "ft")
    assert error_bar(ft, "UA") == [[5.0], [5.0]]  # 85 within [80, 90]
    assert error_bar(summary_of(ROWS[:1], "ft"), "UA") is None  # one seed: no bar


def test_readme_score_table_is_rendered_from_the_declarations():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- metrics:begin -->\n")[1].split("<!-- metrics:end -->")[0]
    assert block == render_metric_table(METRICS), "README's score table is stale: paste render_metric_table's output"


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


# The README's Findings quote these means and intervals (one decimal) from the committed rows; this keeps them honest.
README_FINDINGS = [
    ("digits", "oracle", "MIA_NN", 51.3, (51.0, 51.7)), ("digits", "oracle", "ULiRA", 49.5, (48.6, 50.4)),
    ("digits", "retrain", "privacy_gap", 3.9, (3.8, 4.1)),
    ("digits", "rl", "MIA_NN", 74.4, (71.3, 76.8)), ("digits", "salun", "MIA_NN", 86.3, (84.3, 87.4)),
    ("digits", "original", "MIA_NN", 75.5, (74.4, 77.6)), ("digits", "trw", "ULiRA", 69.5, (68.1, 71.9)),
    ("digits", "trw", "privacy_gap", 12.5, (11.3, 14.2)), ("digits", "rwft", "privacy_gap", 13.1, None),
    ("digits", "amun", "privacy_gap", 13.2, None), ("digits", "unsir", "privacy_gap", 13.7, None),
    ("digits", "neggrad_plus", "ULiRA", 66.7, None), ("digits", "neggrad_plus", "RA", 21.9, (18.9, 23.9)),
    ("digits", "ft", "UA", 14.0, (8.9, 20.8)), ("digits", "ga", "UA", 15.6, (3.5, 27.2)),
]


@pytest.mark.parametrize(("preset", "method", "column", "quoted", "interval"), README_FINDINGS)
def test_figures_quoted_in_the_readme_match_the_committed_rows(preset, method, column, quoted, interval):
    root = Path(__file__).resolve().parents[1]
    rows = read_rows(root / "benchmark" / "results" / preset / "results.jsonl")
    summary = next(s for s in aggregate(rows, METRICS)[preset] if s.method == method)
    readme = (root / "README.md").read_text()
    assert round(summary.mean[column], 1) == quoted and f"{quoted}" in readme
    if interval is not None:
        assert tuple(round(v, 1) for v in summary.ci[column]) == interval
        assert f"{quoted} [{interval[0]}, {interval[1]}]" in readme


def test_the_committed_digits_grid_is_the_tuned_full_grid_on_unseen_seeds():
    """leaderboard.md's digits table rests on every forget class x 3 seeds, none of them a tuning seed, each
    method with the hyperparameters its tuning record chose (benchmark/presets/tuned/digits.yaml)."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    rows = read_rows(root / "benchmark" / "results" / "digits" / "results.jsonl")
    records = yaml.safe_load((root / "benchmark" / "presets" / "tuned" / "digits.yaml").read_text())["methods"]
    cells = {(r["seed"], tuple(r["forget_classes"])) for r in rows}
    assert len(cells) >= 30 and {s for s, _ in cells} == {0, 1, 2}
    tuning_seeds = {s for record in records.values() for s in record["seeds"]}
    assert tuning_seeds and not tuning_seeds & {s for s, _ in cells}
    for row in rows:
        record = records.get(row["method"])
        if record is not None:  # every tuned method ran with its chosen values, and says which tuning chose them
            assert {k: row["hparams"][k] for k in record["hparams"]} == record["hparams"], row["method"]
            assert row["tuning"]["best_value"] == record["best_value"]
    assert set(records) == {m for m in {r["method"] for r in rows} if m not in ("original", "retrain")}
