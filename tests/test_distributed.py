"""Several processes through Lightning's own DDP (CPU, gloo): the same scores as one process, one row per cell.

Also the pieces that make it so, in one process: rank 0's decisions and the Trainer passthrough.
"""

from __future__ import annotations

import shutil

import pytest
from scale import finish, rows, start, tiny_preset, without_measured

from benchmark.cli import build_parser, trainer_arguments
from benchmark.core.distributed import agree, is_writer
from benchmark.engine.fitting import FitSettings, rendezvous


def test_single_process_needs_no_rendezvous_and_decides_alone():
    assert rendezvous(FitSettings(trainer_kwargs={"accelerator": "cpu", "devices": 1})) == 1
    assert is_writer() and agree(lambda: 41 + 1) == 42
    with pytest.raises(ZeroDivisionError):
        agree(lambda: 1 / 0)


def test_spawning_strategies_are_refused_with_the_alternative():
    with pytest.raises(ValueError, match="use strategy 'ddp'"):
        rendezvous(FitSettings(trainer_kwargs={"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}))


def test_trainer_arguments_reach_every_trainer():
    args = build_parser().parse_args(["run", "--accelerator", "cpu", "--devices", "1", "--precision", "bf16-mixed",
                                      "--trainer", "gradient_clip_val=0.5", "--trainer", "deterministic=true"])
    kwargs = trainer_arguments(args)
    assert kwargs == {"accelerator": "cpu", "devices": 1, "precision": "bf16-mixed", "gradient_clip_val": 0.5,
                      "deterministic": True}
    trainer = FitSettings(trainer_kwargs=kwargs).trainer(1)
    assert trainer.gradient_clip_val == 0.5 and trainer.precision == "bf16-mixed"


@pytest.mark.parametrize("bad", ["max_epochs=3", "no_equals_sign"])
def test_trainer_arguments_the_benchmark_owns_or_malformed_ones_are_refused(bad):
    with pytest.raises(ValueError, match="--trainer"):
        trainer_arguments(build_parser().parse_args(["run", "--trainer", bad]))


@pytest.mark.slow
def test_two_processes_score_a_fixed_model_as_one_does_and_write_one_row_per_cell(tmp_path):
    preset = tiny_preset(tmp_path)
    cell = ["run", "--preset", preset, "--forget-classes", "3", "--accelerator", "cpu"]
    log = tmp_path / "single.log"
    finish(start(*cell, "--methods", "original", "--out", tmp_path / "single", "--cache", tmp_path / "cache",
                 log=log), log)
    # the same trained models, none of their outputs: the two-process run evaluates every model itself
    shutil.copytree(tmp_path / "cache" / "models", tmp_path / "ddp-cache" / "models")
    log = tmp_path / "ddp.log"
    text = finish(start(*cell, "--methods", "original,ft", "--out", tmp_path / "ddp", "--cache",
                        tmp_path / "ddp-cache", "--strategy", "ddp", "--devices", "2", log=log), log)
    assert "0 models trained" in text  # both ranks loaded the same cached bank

    single, ddp = rows(tmp_path / "single"), rows(tmp_path / "ddp")
    assert [r["method"] for r in ddp] == ["original", "ft"]  # exactly one row per cell: rank 1 wrote none
    assert all(r["status"] == "ok" for r in ddp), [r.get("error") for r in ddp]
    # the original model, unchanged by its zero-epoch fit: every score, attacks included, identical
    assert without_measured(ddp[0]) == without_measured(single[0])
    # a full cell: the method and its S unlearned shadows were fitted on two processes, then attacked
    assert {"UA", "RA", "MIA_NN", "MIA_NN_shadow", "ULiRA", "ULiRA_AUC"} <= ddp[1]["metrics"].keys()
