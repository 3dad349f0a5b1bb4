"""`bench perf --quick --json` measures and prints every figure of issues 7, 14 and 16 (README: Performance)."""

import json

import pytest

from benchmark.cli import main

FIGURES = {
    "a": ["a_suite_s", "a_bare_s", "a_ratio", "a_max_weight_diff"],
    "b": ["b_models", "b_epochs", "b_stacked_s", "b_sequential_s", "b_speedup", "b_max_weight_diff", "b_stacked",
          "b_vmap_s", "b_vmap_max_weight_diff"],
    "c": ["c_max_passes", "c_min_passes", "c_model_splits"],
    "d": ["d_total_s", "d_bank_training_s", "d_unlearning_s", "d_shadow_unlearning_s", "d_attacks_and_rest_s",
          "d_peak_rss_mb"],
    "e": ["e_bank_size_s", "e_dataset_size_s"],
    "f": ["f_shadow_unlearning_s", "f_unlearning_s", "f_ratio", "f_fits_ratio"],
    "g": ["g_digits"],
    "h": ["h_suite_s", "h_bare_s", "h_ratio", "h_max_weight_diff"],
    "j": ["j_model", "j_channels_last_s", "j_contiguous_s", "j_speedup", "j_layout"],
    "k": ["k_methods", "k_probes_s", "k_rest_s", "k_share", "k_parts_s", "k_bank_training_s"],
    "l": ["l_batched_s", "l_per_sample_s", "l_speedup", "l_images", "l_batch_size"],
}


def test_quick_perf_prints_every_figure_and_one_inference_pass(capsys):
    assert main(["perf", "--quick", "--json", "--methods", "ft", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    for name, keys in FIGURES.items():
        assert f"{name} " in out  # each figure is printed as it is measured
        missing = [k for k in keys if k not in figures]
        assert not missing, f"figure {name} lacks {missing}"
    assert figures["c_max_passes"] == 1 and figures["c_min_passes"] == 1  # one inference pass per model and split
    assert figures["a_max_weight_diff"] == 0.0  # the bare loop did exactly the suite's work
    assert figures["b_stacked"] and figures["b_max_weight_diff"] == 0.0  # the group trained the very same models
    assert set(figures["e_bank_size_s"]) == {"2", "4"} and len(figures["e_dataset_size_s"]) == 2
    assert all(figures[k] > 0 for k in ("a_suite_s", "a_bare_s", "b_stacked_s", "b_sequential_s", "d_total_s"))
    assert figures["h_max_weight_diff"] == 0.0  # the bare loop trained the group's very models
    assert figures["j_layout"] == "contiguous" and figures["j_channels_last_s"] > 0  # digits' mlp: the default
    assert figures["g_digits"]["cells"] == 2 and figures["g_digits"]["rows"] == 2  # two cells of one method


def test_only_measures_the_named_figures(capsys):
    assert main(["perf", "--quick", "--json", "--methods", "ft", "--threads", "1", "--only", "h"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "h_ratio" in figures and not any(k in figures for k in ("a_ratio", "d_total_s", "g_digits"))
    with pytest.raises(SystemExit) as exit_:  # an unknown figure is a usage error, before anything runs
        main(["perf", "--only", "z"])
    assert exit_.value.code == 2 and "unknown figure z" in capsys.readouterr().err


def test_figure_l_times_one_epoch_of_augmented_batches_both_ways(capsys):
    assert main(["perf", "--quick", "--json", "--threads", "1", "--only", "l"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["l_images"] == 2048 and figures["l_batch_size"] == 512
    assert figures["l_batched_s"] > 0 and figures["l_per_sample_s"] > 0
    assert figures["l_speedup"] == pytest.approx(figures["l_per_sample_s"] / figures["l_batched_s"])


def test_figure_k_puts_the_probes_time_beside_the_rest_of_the_cell(capsys):
    assert main(["perf", "--quick", "--json", "--methods", "original,ft", "--threads", "1", "--only", "k"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["k_methods"] == 2 and figures["k_bank"] == {"references": 2, "shadows": 2}
    parts = figures["k_parts_s"]
    assert set(parts) == {"relearning", "representation"}  # both probes ran, on each row's model and once shared
    assert all(set(part) == {"method", "oracle", "null"} and min(part.values()) > 0 for part in parts.values())
    assert figures["k_rest_s"] > 0 and 0 < figures["k_share"] < 1  # the probes are a part of the cells' time
