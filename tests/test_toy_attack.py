"""A new attack is one MetricCallback that declares its metric, plus one register_callback call: its score
reaches the rows, the leaderboard and the --verbose line with no other file edited. The toy attack lives
in this file on purpose."""

from __future__ import annotations

import json
import logging

import pytest

from attacks import MetricCallback, MetricInfo, Outputs
from benchmark.cli import main
from benchmark.engine.callbacks import CALLBACKS, declared_metrics, register_callback

TOY = MetricInfo("toy_score", "Toy score", "%", "oracle", "mean top-class probability on D_f", column=True)


class ToyAttack(MetricCallback):
    metrics = (TOY,)

    def compute(self, outputs: Outputs) -> dict[str, float]:
        return {TOY.key: 100.0 * float(outputs.probs("D_f").max(dim=1).values.mean())}


@pytest.fixture
def toy_attack():
    register_callback("toy_attack", ToyAttack)
    # --verbose turns Lightning's loggers up for the process; later tests should find them as they were
    levels = {name: logging.getLogger(name).level for name in ("lightning.pytorch", "lightning.fabric")}
    yield
    CALLBACKS.unregister("toy_attack")
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_a_registered_toy_attack_reaches_rows_leaderboard_and_verbose_line(toy_attack, cache, tmp_path, capsys):
    out = tmp_path / "digits"
    assert main(["run", "--preset", "digits", "--methods", "ft", "--forget-classes", "3", "--references", "2",
                 "--shadows", "2", "--out", str(out), "--cache", str(cache.root), "--verbose"]) == 0
    (row,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert row["status"] == "ok" and TOY.key in row["metrics"] and TOY.key in row["oracle"]
    assert f"{TOY.label} {row['metrics'][TOY.key]:.1f}" in " ".join(capsys.readouterr().out.split())

    board = tmp_path / "leaderboard.md"
    assert main(["leaderboard", "--runs", str(out), "--output", str(board), "--no-figures"]) == 0
    header, _, oracle, ft = [line for line in board.read_text().splitlines() if line.startswith("|")][:4]
    labels = [cell.strip() for cell in header.strip("|").split("|")]
    at = labels.index(TOY.label)
    for line, scores in ((oracle, row["oracle"]), (ft, row["metrics"])):
        assert line.strip("|").split("|")[at].strip().strip("*").startswith(f"{scores[TOY.key]:.2f}")  # 1 seed: no CI


def test_a_metric_key_is_declared_once_and_every_callback_declares_its_metrics():
    class Clash(MetricCallback):
        metrics = (MetricInfo("UA", "UA again", "%", "low", "a second UA"),)

    with pytest.raises(ValueError, match="'UA' is declared twice: by accuracy and by clash"):
        register_callback("clash", Clash)

    class Undeclared(MetricCallback):
        pass

    with pytest.raises(TypeError, match="must declare the scores it writes"):
        register_callback("undeclared", Undeclared)
    assert "clash" not in CALLBACKS and "undeclared" not in CALLBACKS
    assert len({m.key for m in declared_metrics()}) == len(declared_metrics())
