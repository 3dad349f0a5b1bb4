"""Sharded grids: disjoint shards, entry locks between jobs, whole appended rows, and a grid run as two
parallel shards into one directory that merges into the unsharded leaderboard."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest
from scale import finish, models_trained, rows, start, tiny_preset, without_measured
from torch import nn

from benchmark.cli import main
from benchmark.core.atomic import append_line
from benchmark.core.locks import EntryLock
from benchmark.engine.cache import ModelCache, config_hash
from benchmark.engine.callbacks import declared_metrics
from benchmark.engine.grid import fit_share
from benchmark.engine.shard import Shard, blocks, split
from benchmark.report.leaderboard import render_markdown
from benchmark.report.store import read_rows


def test_shards_are_disjoint_and_cover_the_grid():
    grid = list(range(23))
    parts = split(grid, 4)
    assert sorted(x for part in parts for x in part) == grid
    assert parts[1] == [1, 5, 9, 13, 17, 21]
    assert Shard.parse("3/4") == Shard(3, 4) and Shard.parse(None).whole and str(Shard(3, 4)) == "3/4"


def test_blocks_are_contiguous_near_equal_and_cover():
    assert blocks(list(range(9)), 2) == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    assert blocks([1, 2], 4) == [[1], [2]] and blocks([], 3) == []


class RecordingCell:
    """What :func:`fit_share` reads of a cell, recording which fits each shard asks for."""

    def __init__(self, shadows: int) -> None:
        self.preset = type("P", (), {"bank": type("B", (), {"shadows": shadows})})()
        self.outputs, self.fitted = None, []
        groups = [[("original", i) for i in range(shadows + 1)], [("retrained", 0)],
                  [("retrained", i) for i in range(1, 2 * shadows + 2)]]
        self.bank = type("Bank", (), {"groups": lambda _: groups,
                                      "outputs_of_block": lambda _, __, block: self.fitted.append(("bank", block))})()

    def key(self, name):
        return name

    def training_key(self, name):
        return name

    def unlearned_shadow_outputs(self, name, key, indices):
        self.fitted.append((name, indices))


def test_each_shard_fits_whole_blocks_so_grouped_fits_survive_sharding():
    """Two shards: every bank model and every in-shadow is fitted once, in blocks of about half a group (one
    in-shadow at a time lost the grouped fit: 1.7x on mnist5k)."""
    cells = [RecordingCell(shadows=8) for _ in range(2)]
    ends = [fit_share(Shard(i, 2), 0, cell, ["ft", "rl"], done=set()) for i, cell in enumerate(cells)]
    assert ends[0] == ends[1]
    fitted = cells[0].fitted + cells[1].fitted
    assert sorted(m for what, block in fitted if what == "bank" for m in block) == sorted(
        m for group in cells[0].bank.groups() for m in group)
    for name in ("ft", "rl"):
        assert sorted(i for what, block in fitted if what == name for i in block) == list(range(1, 9))
        assert all(len(block) == 4 for what, block in fitted if what == name)
    assert all(len(block) >= 4 for what, block in fitted if what == "bank" and ("retrained", 0) not in block)
    finished = RecordingCell(shadows=8)
    assert fit_share(Shard(0, 2), 0, finished, ["ft"], done={"ft"}) == ends[0] - 2  # its positions kept,
    assert finished.fitted == []  # but a finished group fits nothing


@pytest.mark.parametrize("bad", ["4/4", "1", "-1/2", "0/0", "a/b"])
def test_bad_shard_specs_say_what_is_expected(bad):
    with pytest.raises(ValueError, match="I/N"):
        Shard.parse(bad)


def test_a_held_lock_excludes_others_until_released(tmp_path):
    first, second = EntryLock(tmp_path / "k.lock"), EntryLock(tmp_path / "k.lock")
    assert first.try_acquire() and not second.try_acquire()
    first.release()
    assert second.try_acquire()
    first.release()  # no longer the holder: must not remove the second's lock
    assert (tmp_path / "k.lock").exists() and not EntryLock(tmp_path / "k.lock").try_acquire()
    second.release()
    assert not (tmp_path / "k.lock").exists()


def test_a_dead_owners_lock_and_a_silent_one_are_broken(tmp_path):
    dead = multiprocessing.get_context("fork").Process(target=EntryLock(tmp_path / "dead.lock").try_acquire)
    dead.start()
    dead.join()
    assert (tmp_path / "dead.lock").exists()  # left behind: its owner never released it
    assert EntryLock(tmp_path / "dead.lock").try_acquire()

    silent = tmp_path / "silent.lock"
    silent.write_text('{"host": "elsewhere", "pid": 1, "token": "x"}')
    assert not EntryLock(silent).try_acquire()  # another host's fresh lock is respected
    old = time.time() - 3600
    os.utime(silent, (old, old))  # an hour without a heartbeat
    assert EntryLock(silent, stale_after=600).try_acquire()


def test_a_shard_waits_for_the_entry_another_is_training_and_loads_it(tmp_path):
    config = {"role": "original", "seed": 0}
    other = ModelCache(tmp_path, poll_s=0.05)
    key = config_hash(config)
    lock = EntryLock(tmp_path / "locks" / "models" / f"{key}.lock")
    assert lock.try_acquire()  # "another shard" is training this entry

    def finish_it():
        time.sleep(0.3)
        other._write(key, "models", nn.Linear(2, 2).state_dict(), config, {"train_time_s": 1.0})
        lock.release()

    threading.Thread(target=finish_it).start()
    cache = ModelCache(tmp_path, poll_s=0.05)
    _, meta = cache.get_or_train(config, lambda: nn.Linear(2, 2), lambda m: pytest.fail("trained it twice"))
    assert cache.trained == [] and cache.loaded == [key] and meta["train_time_s"] == 1.0


def _append_many(path, tag):
    for i in range(200):
        append_line(path, f'{{"writer": "{tag}", "i": {i}, "pad": "{"x" * 5000}"}}')


def test_concurrent_appends_never_interleave(tmp_path):
    path = tmp_path / "rows.jsonl"
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_append_many, args=(path, tag)) for tag in "ab"]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 400 and all(line.startswith('{"writer"') and line.endswith('"}') for line in lines)


@pytest.mark.slow
def test_two_parallel_shards_merge_into_the_unsharded_leaderboard(tmp_path, monkeypatch):
    grid = ["run", "--preset", tiny_preset(tmp_path), "--methods", "ft,rl", "--forget-classes", "3", "8"]
    runs = [start(*grid, "--out", tmp_path / "shared", "--cache", tmp_path / "shared-cache", "--shard", f"{i}/2",
                  log=tmp_path / f"shard{i}.log") for i in range(2)]
    runs.append(start(*grid, "--out", tmp_path / "whole", "--cache", tmp_path / "whole-cache",
                      log=tmp_path / "whole.log"))
    *shard_logs, whole_log = [finish(run, tmp_path / name) for run, name in
                              zip(runs, ["shard0.log", "shard1.log", "whole.log"])]
    assert all("2 cells left to other shards" in log for log in shard_logs)
    # together the shards trained the bank exactly once (3 originals, shared by both forget classes, and 6
    # retrained models per forget class): whoever came second to a model waited for it and loaded it
    assert sum(map(models_trained, shard_logs)) == models_trained(whole_log) == 3 + 2 * 6
    assert all(models_trained(log) > 0 for log in shard_logs)  # and both took part

    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--runs", "shared", "--output", "merged.md"]) == 0
    shared, whole = read_rows(tmp_path / "shared" / "results.jsonl"), rows(tmp_path / "whole")
    cells = sorted((r["method"], r["forget_classes"]) for r in whole)
    assert sorted((r["method"], r["forget_classes"]) for r in shared) == cells and len(cells) == 4
    by_cell = {(r["method"], tuple(r["forget_classes"])): r for r in whole}
    for row in shared:  # every score of every cell, bit for bit, wall-clock times aside
        assert without_measured(row) == without_measured(by_cell[row["method"], tuple(row["forget_classes"])])

    def board(rows_):  # what the two leaderboards may not share: wall-clock times, run dates and the commands
        neutral = {"started": "-", "finished": "-", "command": "bench run"}  # (shard commands name their shard)
        return render_markdown([r | without_measured(r) | neutral for r in rows_], declared_metrics(), command="x")

    assert board(shared) == board(whole)
