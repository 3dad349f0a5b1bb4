"""The command line shared by the studies that compute records cell by cell (MIA-NN settings, TRW controls):
choose the cells, compute (or reload) the records, print the tables."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch

from benchmark.core.quiet import quiet_lightning
from benchmark.engine.cache import ModelCache

TUNING_SEEDS = (100, 101)  # never the leaderboard's seeds
FORGET = (1, 3, 8)


def run_cell_study(description: str, cell_records: Callable[[str, int, int, ModelCache], list[dict]],
                   print_tables: Callable[[list[dict]], None]) -> None:
    """Parse ``--presets/--seeds/--forget/--cache/--records/--from-records`` and run the study.

    Args:
        description: the study's one-line description (``--help``).
        cell_records: the records of one (preset, seed, forget class), given the model cache.
        print_tables: renders every record (computed now or read back with ``--from-records``).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--presets", nargs="+", default=["digits"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(TUNING_SEEDS))
    parser.add_argument("--forget", nargs="+", type=int, default=list(FORGET))
    parser.add_argument("--cache", default="runs/cache")
    parser.add_argument("--records", help="also write the raw scores to this JSON file")
    parser.add_argument("--from-records", nargs="+", help="render the tables of these records; compute nothing")
    args = parser.parse_args()
    if args.from_records:
        print_tables([r for f in args.from_records for r in json.loads(Path(f).read_text())])
        return
    torch.set_num_threads(2)
    cache = ModelCache(args.cache)
    with quiet_lightning():
        records = [r for name in args.presets for seed in args.seeds for forget in args.forget
                   for r in cell_records(name, seed, forget, cache)]
    if args.records:
        Path(args.records).write_text(json.dumps(records, indent=1))
    print_tables(records)
