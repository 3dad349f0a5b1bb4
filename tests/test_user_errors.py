"""User mistakes (issue 17): a bad device count, an unknown Trainer argument, a directory that cannot be written
end ``bench run`` and ``bench tune`` with one ``error:`` line and status 2 before anything trains; Ctrl-C and
SIGTERM stop a run in order, say what was kept, and exit 130 and 143 as a shell reports those signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scale import bench_env, untimed

from benchmark.cli import main
from benchmark.core.interrupts import signals_interrupt
from benchmark.core.writable import check_writable

ROOT = Path(__file__).resolve().parents[1]
RUN = ["run", "--preset", "digits", "--methods", "ft", "--forget-classes", "3", "--seeds", "0", "--references", "2",
       "--shadows", "2", "--quiet"]
TUNE = ["tune", "--preset", "digits", "--methods", "ft", "--trials", "1", "--quiet"]
SIGNAL_TIMEOUT_S = 600  # the first model of a cold digits bank, on a busy 2-core machine


def one_line_error(argv: list[str], capsys) -> str:
    """Run the command line in-process; it must refuse with status 2 and one ``error:`` line."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("command", [RUN, TUNE], ids=["run", "tune"])
@pytest.mark.parametrize("flags, message", [
    (["--devices", "0"], "--devices must be a positive count like 2, device ids like '0,1' (one id: '0,'), -1 for "
                         "all, or auto; got 0"),
    (["--devices", "-3"], "--devices must be a positive count"),
    (["--devices", "0,0"], "--devices: device id 0 is given twice"),
    (["--trainer", "devices=0"], "--trainer devices must be a positive count"),
    (["--num-nodes", "0"], "--num-nodes must be a positive number of machines, got 0"),
    (["--trainer", "bogus_arg=1"], "unknown Lightning Trainer argument 'bogus_arg'. Known Lightning Trainer "
                                   "arguments: accelerator,"),
    (["--trainer", "gradient_clip=1"], "unknown Lightning Trainer argument 'gradient_clip'. Did you mean "
                                       "gradient_clip_val, gradient_clip_algorithm?"),
    (["--trainer", "max_epochs=3"], "--trainer max_epochs: the benchmark sets max_epochs itself for every fit"),
    (["--precision", "bogus"], "Lightning refuses the Trainer settings (accelerator='cpu', devices=1, "
                               "precision='bogus'): Precision 'bogus' is invalid."),
])
def test_bad_trainer_settings_are_one_line_errors_before_any_work(command, flags, message, tmp_path, capsys):
    where = ["--cache", str(tmp_path / "cache"), "--study" if command is TUNE else "--out", str(tmp_path / "out")]
    assert message in one_line_error([*command, *where, *flags], capsys)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()  # refused before any work


def test_settings_lightning_accepts_still_pass(tmp_path):
    """The checks refuse mistakes only: ids, 'auto', -1 and the Trainer's own arguments go through."""
    from benchmark.cli import build_parser, trainer_arguments

    args = build_parser().parse_args(["run", "--devices", "0,1", "--num-nodes", "2", "--trainer", "devices=auto",
                                      "--trainer", "deterministic=true"])
    assert trainer_arguments(args) == {"accelerator": "cpu", "devices": "auto", "num_nodes": 2, "deterministic": True}
    for devices in ("-1", "3", "0,", "auto"):
        trainer_arguments(build_parser().parse_args(["run", "--devices", devices]))


@pytest.mark.parametrize("command, flag", [(RUN, "--cache"), (RUN, "--out"), (TUNE, "--study"), (TUNE, "--cache")])
def test_a_directory_that_cannot_be_created_is_refused_before_any_work(command, flag, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    inside = blocker / "dir"
    defaults = {"--cache": tmp_path / "cache", ("--study" if command is TUNE else "--out"): tmp_path / "out"}
    where = [str(part) for key, value in (defaults | {flag: inside}).items() for part in (key, value)]
    err = one_line_error([*command, *where], capsys)
    assert err == f"error: {flag} {inside}: cannot create this directory: {blocker} is a file, not a directory"
    assert not any((tmp_path / "cache").rglob("*.json"))  # nothing trained


def test_rescore_refuses_an_unwritable_out_and_leaves_no_directory_behind(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    err = one_line_error(["rescore", str(tmp_path / "run"), "--out", str(tmp_path / "a-file" / "x")], capsys)
    assert "cannot create this directory" in err
    # a writable --out is probed, then removed again when the run directory itself is refused
    one_line_error(["rescore", str(tmp_path / "run"), "--out", str(tmp_path / "new" / "out")], capsys)
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match=rf"--cache {locked / 'cache'}: cannot create this directory: "
                                             "Permission denied"):
            check_writable(locked / "cache", "--cache")
        with pytest.raises(ValueError, match=rf"--out {locked}: cannot write in this directory: Permission denied"):
            check_writable(locked, "--out")
    finally:
        locked.chmod(0o700)


def test_signals_raise_keyboard_interrupt_inside_the_block_only():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), signals_interrupt() as received:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the next bytecode
    assert received.signal == signal.SIGTERM and received.exit_status() == 143
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_interruption_before_the_work_says_so_and_other_exits_pass_through(monkeypatch, capsys):
    import benchmark.cli as cli

    def interrupted(args, console):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_list", interrupted)
    assert main(["list"]) == 130
    assert capsys.readouterr().err == "interrupted (SIGINT) before any work started\n"

    def exits(args, console):
        raise SystemExit(3)  # an exit no signal caused is the command's own

    monkeypatch.setattr(cli, "cmd_list", exits)
    with pytest.raises(SystemExit, match="3"):
        main(["list"])


def test_what_an_interrupted_tune_keeps_counts_finished_trials_only(tmp_path):
    import optuna

    from benchmark.cli import kept_summary

    study = optuna.create_study(study_name="p/ft/privacy", storage=f"sqlite:///{tmp_path / 'study.db'}")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    assert kept_summary(trials=tmp_path, cache=tmp_path / "cache") == (f"2 finished trials kept in {tmp_path}, "
                                                                      f"0 trained models kept in {tmp_path / 'cache'}")


# -- interruptions of a real run ----------------------------------------------------------------------------

def run_argv(out: Path, cache: Path) -> list[str]:
    return [sys.executable, "-u", "-m", "benchmark.cli", *RUN, "--out", str(out), "--cache", str(cache)]


def interrupted_run(sig: signal.Signals, tmp_path: Path) -> tuple[int, str]:
    """Start ``bench run`` in a subprocess, send ``sig`` once its first model is cached; its status and stderr."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = run_argv(out, cache)
    proc = subprocess.Popen(argv, cwd=ROOT, env=bench_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + SIGNAL_TIMEOUT_S
        while not any((cache / "models").rglob("*.json")):  # mid-bank: the first model is written, others train
            assert proc.poll() is None, f"the run ended before the signal:\n{proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no model was cached in time"
            time.sleep(0.2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    models = sum(1 for _ in (cache / "models").rglob("*.json"))
    assert err.strip() == (f"interrupted ({sig.name}): 0 rows kept in {out}, {models} trained model"
                           f"{'' if models == 1 else 's'} kept in {cache}; the same command resumes"), err
    return proc.returncode, err


def test_ctrl_c_mid_bank_exits_130_saying_what_is_kept(tmp_path):
    assert interrupted_run(signal.SIGINT, tmp_path)[0] == 130


def test_sigterm_mid_bank_exits_143_saying_what_is_kept(tmp_path):
    assert interrupted_run(signal.SIGTERM, tmp_path)[0] == 143


def run_to_end(out: Path, cache: Path) -> list[dict]:
    result = subprocess.run(run_argv(out, cache), cwd=ROOT, env=bench_env(), capture_output=True, text=True,
                            timeout=SIGNAL_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_after_ctrl_c_the_same_command_ends_with_the_rows_of_an_uninterrupted_run(tmp_path):
    """The interrupted run keeps its cache; the rerun trains what is missing, and its rows equal those of a run
    that was never interrupted (from its own empty cache), timings aside."""
    assert interrupted_run(signal.SIGINT, tmp_path / "interrupted")[0] == 130
    resumed = run_to_end(tmp_path / "interrupted" / "out", tmp_path / "interrupted" / "cache")
    clean = run_to_end(tmp_path / "clean" / "out", tmp_path / "clean" / "cache")
    assert [r["status"] for r in resumed] == ["ok"]
    assert [untimed(r) for r in resumed] == [untimed(r) for r in clean]
