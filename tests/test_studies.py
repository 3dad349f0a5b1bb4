"""The measured studies' own arithmetic, on hand-made records (the studies themselves train banks)."""

from pathlib import Path

import pytest
import torch

from benchmark.studies.mia_nn_settings import choose, summarise
from benchmark.studies.trw_controls import forget_mask
from benchmark.studies.ulira_null import pair_null


def _record(feature, c, original, null, seed=0):
    return {"preset": "p", "seed": seed, "forget": 1, "feature": feature, "C": c, "gamma": "scale",
            "original": original, "null": null}


def test_the_settings_rule_prefers_an_honest_null_over_a_larger_separation():
    records = [_record("prob", 1.0, 90.0, [52.0, 54.0, 56.0]),   # separates 18 sds, null mean 54: biased
               _record("logprob", 1.0, 60.0, [49.0, 50.0, 51.0])]  # separates 10 sds, null mean 50: honest
    summary = summarise(records)
    assert {s["feature"]: round(s["separation"], 6) for s in summary} == {"prob": 18.0, "logprob": 10.0}
    best, honest = choose(summary)
    assert best["feature"] == "logprob" and honest


def test_without_an_honest_setting_the_rule_takes_the_null_closest_to_50():
    summary = summarise([_record("prob", 1.0, 90.0, [53.0, 54.0, 55.0]), _record("renorm", 1.0, 60.0, [51.0, 52.0])])
    best, honest = choose(summary)
    assert best["feature"] == "renorm" and not honest


def test_a_null_that_never_moves_is_not_infinitely_separating():
    (summary,) = summarise([_record("logprob", 10.0, 50.0, [50.0, 50.0, 50.0])])
    assert summary["separation"] == 0.0 and summary["null_sd"] == 0.0


def test_the_one_pair_null_is_centred_on_50_for_exchangeable_models():
    generator = torch.Generator().manual_seed(0)
    models = torch.randn(18, 40, generator=generator, dtype=torch.float64) + torch.randn(40, generator=generator)
    null = pair_null(models, 8, draws=300, seed=1)
    assert null.mean().item() == pytest.approx(50.0, abs=3 * null.std().item() / 300 ** 0.5)


def test_the_trw_study_reads_the_forget_samples_of_v_only():
    assert forget_mask(torch.tensor([0, 3, 1, 3]), (3,)).tolist() == [False, True, False, True]


def test_the_readmes_derived_findings_are_what_the_findings_command_prints():
    """Every number the README's Findings add to leaderboard.md comes from `python -m benchmark.studies.findings`."""
    from benchmark.report.stats import paired_difference
    from benchmark.report.store import read_rows
    from benchmark.studies.findings import PAIRS, ROWS, findings, per_cell

    root = Path(__file__).resolve().parents[1]
    readme = " ".join((root / "README.md").read_text().split())
    rows = read_rows(root / ROWS)
    for other, p_text in (("rwft", "p = 0.09"), ("amun", "p = 0.43")):
        trw = paired_difference(per_cell(rows, "trw", "privacy_gap"), per_cell(rows, other, "privacy_gap"))
        assert f"{trw.mean:.2f} [{trw.ci_low:.2f}, {trw.ci_high:.2f}]" in readme and f"({p_text})" in readme
        assert trw.ci_low < 0 < trw.ci_high and p_text == f"p = {trw.p:.2f}"  # no difference is claimed
    ta = paired_difference(per_cell(rows, "unsir", "TA"), per_cell(rows, "rwft", "TA"))
    assert f"{-ta.mean:.1f} points [{-ta.ci_high:.1f}, {-ta.ci_low:.1f}] below `rwft` (p = {ta.p:.3f})" in readme
    assert ta.ci_high < 0  # the claim's direction
    lines = findings(rows)[len(PAIRS):]  # after the paired comparisons: null spreads, TRW's diagnostics, cell time
    mia_sd, ulira_sd = (float(x.split()[-1]) for x in lines[0].split(": ")[1].split(", "))
    assert f"null sd is about {mia_sd} points for MIA-NN and {ulira_sd} for U-LiRA" in readme
    tilt = lines[1].split()
    assert f"by {100 * float(tilt[3]):.1f}% of its mass" in readme
    assert f"{tilt[5].rstrip(',')} to {tilt[7][:-2]}" in readme  # min to max
    assert f"Spearman {tilt[-1]} on average" in readme
    assert f"{lines[2].split()[2]} minutes of cell time" in readme


def test_the_readmes_robustness_claims_are_paired_against_their_nulls():
    """Each probe claim the README makes is a method's per-cell score minus its cell's null mean, quoted with its
    cluster-bootstrap interval, and the interval excludes zero (else no difference would be claimed)."""
    from benchmark.report.stats import paired_difference
    from benchmark.report.store import read_rows
    from benchmark.studies.findings import AGAINST_NULL, ROWS, per_cell

    root = Path(__file__).resolve().parents[1]
    readme = " ".join((root / "README.md").read_text().split())
    rows = read_rows(root / ROWS)
    for method, key in AGAINST_NULL:
        d = paired_difference(per_cell(rows, method, key), per_cell(rows, method, f"{key}_null_mean"))
        assert d.cells == 30 and not d.ci_low <= 0 <= d.ci_high, (method, key)
        quoted = f"{d.mean:+.2f} [{d.ci_low:.2f}, {d.ci_high:.2f}]"
        assert quoted in readme, (method, key, quoted)
