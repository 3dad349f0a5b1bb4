"""U-LiRA under the null: how far from 50 a score lands when nothing was learned, for the one-pair
estimator of protocol 1 and the leave-one-model-out estimator of protocol 2 (docs/protocol.md, U-LiRA).

    python -m benchmark.studies.ulira_null [--presets digits] [--seeds 100 101] [--forget 1 3 8] [--draws 400]

Every cell's bank holds M + S + 2 models retrained without the forget class (the oracle, the references and
the further retrained models): exchangeable, so any split of them into a "method" side and a retrained side
is a draw from the null. Per draw, the one-pair score takes one model of each side as the scored model and
the oracle and fits its Gaussians on S and M others; the leave-one-model-out score uses S + 1 against M + 1.
Only cached bank outputs are read: nothing is unlearned.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import torch

from attacks.functional import logit_confidence, ulira_null, ulira_scores, ulira_summary
from benchmark.core.quiet import quiet_lightning
from benchmark.engine.bank import ModelBank
from benchmark.engine.cache import ModelCache
from benchmark.engine.cell import build_datamodule
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.preset import Bank, load_preset


def retrained_statistics(preset_name: str, seed: int, forget: int, cache: ModelCache, size: int) -> torch.Tensor:
    """(M + S + 2, n) logit-scaled confidences on D_f of the cell's retrained bank models (M = S = size)."""
    preset = replace(load_preset(preset_name), bank=Bank(references=size, shadows=size))
    dm = build_datamodule(preset, seed, (forget,))
    bank = ModelBank(preset, dm, cache)
    bank.train_missing()
    provider = OutputsProvider(dm, cache)
    outputs = [bank.outputs(provider, "retrained", i) for i in range(2 * size + 2)]
    return torch.stack([logit_confidence(o.logits["D_f"], o.labels["D_f"]) for o in outputs])


def pair_null(retrained: torch.Tensor, shadows: int, *, draws: int, seed: int) -> torch.Tensor:
    """Protocol 1's one-pair score over random role assignments of exchangeable models."""
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(draws):
        order = torch.randperm(len(retrained), generator=generator)
        scored, oracle = retrained[order[0]], retrained[order[1]]
        in_stats, out_stats = retrained[order[2:2 + shadows]], retrained[order[2 + shadows:]]
        positive, negative = ulira_scores(scored, in_stats, out_stats), ulira_scores(oracle, in_stats, out_stats)
        scores.append(ulira_summary(positive, negative)["ULiRA"])
    return torch.tensor(scores, dtype=torch.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["digits"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[100, 101])
    parser.add_argument("--forget", nargs="+", type=int, default=[1, 3, 8])
    parser.add_argument("--bank-size", type=int, default=8, help="M = S (default 8)")
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--cache", default="runs/cache")
    args = parser.parse_args()
    cache = ModelCache(args.cache)
    print("| preset | seed | forget | estimator | null mean | null sd | outside [40, 60] |")
    print("|---|---:|---:|---|---:|---:|---:|")
    pooled: dict[str, list[float]] = {"one pair (protocol 1)": [], "leave-one-model-out (protocol 2)": []}
    with quiet_lightning():
        for name in args.presets:
            for seed in args.seeds:
                for forget in args.forget:
                    stats = retrained_statistics(name, seed, forget, cache, args.bank_size)
                    for label, null in (
                            ("one pair (protocol 1)", pair_null(stats, args.bank_size, draws=args.draws, seed=seed)),
                            ("leave-one-model-out (protocol 2)",
                             ulira_null(stats, args.bank_size + 1, draws=args.draws, seed=seed))):
                        values = null.tolist()
                        pooled[label] += values
                        outside = sum(not 40 <= v <= 60 for v in values) / len(values)
                        print(f"| {name} | {seed} | {forget} | {label} | {statistics.fmean(values):.1f} | "
                              f"{statistics.stdev(values):.1f} | {100 * outside:.0f}% |")
    for label, values in pooled.items():
        print(f"\nAll cells, {label}: null mean {statistics.fmean(values):.1f}, sd {statistics.stdev(values):.1f} "
              f"({len(values)} draws)")


if __name__ == "__main__":
    main()
