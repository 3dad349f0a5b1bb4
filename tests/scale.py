"""Helpers of the scale-out tests: a digits preset with a short recipe, and ``bench`` in a subprocess.

The runs go through real subprocesses because Lightning's ``ddp`` re-launches the command line for
rank 1 (which must be ``bench``, not pytest) and because shards are separate jobs.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

# digits with a short recipe and a tiny bank (M = S = 2): every fit takes a second or two. The model has
# BatchNorm, so that (a) the two-process test covers buffers DDP does not keep in step and (b) every run
# fits its bank one model at a time (stacked fits, benchmark.engine.stacked, equal sequential ones only up to
# rounding, and an unsharded run would stack what shards fit one by one), so runs compare bit for bit.
TINY_PRESET = """\
description: "digits with a short recipe, for the scale-out tests"
dataset: digits
model: small_cnn
val_fraction: 0.1
test_fraction: 0.2
train: {optimizer: sgd, lr: 0.05, momentum: 0.9, weight_decay: 5.0e-4, epochs: 4, batch_size: 64, scheduler: cosine}
unlearn_batch_size: 64
forget_classes: [[3], [8]]
seeds: [0]
bank: {references: 2, shadows: 2}
methods:
  ft: {lr: 0.02, epochs: 2}
  rl: {lr: 0.01, epochs: 2}
"""
MEASURED = ("time_s", "time_ratio")  # wall-clock scores: the only ones allowed to differ between runs


def tiny_preset(folder: Path) -> str:
    path = folder / "tiny_digits.yaml"
    path.write_text(TINY_PRESET)
    return str(path)


def bench_env() -> dict[str, str]:
    """One thread per process (bitwise-repeatable CPU sums, no oversubscription of the CI's cores), and no
    launcher variables inherited from the job running the tests (they would make Lightning skip its launch)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "PMI_", "OMPI_")) and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE",
                                                                         "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return env | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def bench_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "benchmark.cli", *map(str, args), "--quiet"]


def start(*args: object, log: Path) -> subprocess.Popen:
    """``bench ARGS`` in the background, stdout and stderr into ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(bench_command(*args), stdout=out, stderr=subprocess.STDOUT, env=bench_env(),
                                cwd=Path(__file__).parent.parent)


def finish(process: subprocess.Popen, log: Path, timeout: float = 900) -> str:
    """Wait for a :func:`start`-ed run; fail with its log if it failed; return the log."""
    code = process.wait(timeout=timeout)
    text = log.read_text()
    assert code == 0, f"{' '.join(process.args)} exited {code}:\n{text[-4000:]}"
    return text


def models_trained(log: str) -> int:
    """The count in the run's last line: 'N new rows (K cells already done, T models trained ...'."""
    return int(re.findall(r"(\d+) models trained", log)[-1])


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if line.strip()]


def without_measured(row: dict) -> dict:
    """The row's scores without wall-clock times."""
    return {part: {k: v for k, v in row[part].items() if k not in MEASURED} for part in ("metrics", "oracle")}


def untimed(row: dict) -> dict:
    """A row with its wall-clock parts (and the command line, which names the directories) blanked:
    what must be identical between two runs of one command."""
    from benchmark.report.store import WALL_CLOCK_DIAGNOSTICS

    row = copy.deepcopy(row)
    row["started"] = row["finished"] = ""
    row.pop("command", None)
    for part in ("metrics", "oracle"):
        for key in MEASURED:
            if key in row[part]:
                row[part][key] = 0.0
    for key in WALL_CLOCK_DIAGNOSTICS:
        row.get("diagnostics", {}).pop(key, None)
    return row
