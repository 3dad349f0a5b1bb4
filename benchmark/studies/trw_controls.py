"""TRW against its own control (docs/protocol.md, TRW): does tilting by the class similarity (beta > 0)
bring the unlearned model closer to retraining than reweighting alone (beta = 0, RWFT)?

    python -m benchmark.studies.trw_controls [--presets digits] [--seeds 100 101] [--forget 1 3 8]

For every cell (tuning seeds, never the leaderboard's) TRW is fitted with beta = 0 and with each
(beta, T) of the grid, temperatures above 1 included. The criterion is the references' ground truth,
which TRW never sees: the total-variation distance between the unlearned model's predictions on V's
forget-class samples and the references' mean prediction there (V is the validation split; no test
data is used). Per setting: the mean improvement over beta = 0 (positive = closer to retraining), its
paired sign-flip p over cells, and TRW's own diagnostics (how far the tilt moves the target, and how
much the similarity ranks classes as the renormalised original already does).
"""

from __future__ import annotations

import copy
import itertools
import statistics
from dataclasses import replace

import torch

from attacks.fidelity import rank_agreement
from attacks.functional import tv_distance
from benchmark.engine.bank import ModelBank
from benchmark.engine.cache import ModelCache
from benchmark.engine.cell import build_datamodule, instantiate_method, unlearn
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.preset import Bank, load_preset
from benchmark.report.stats import sign_flip_p
from benchmark.studies.cell_study import run_cell_study

BETAS = (3.0, 10.0, 30.0)
TEMPERATURES = (0.3, 1.0, 3.0)


def forget_mask(labels: torch.Tensor, forget_classes: tuple[int, ...]) -> torch.Tensor:
    return torch.isin(labels, torch.tensor(forget_classes))


def cell_records(preset_name: str, seed: int, forget: int, cache: ModelCache) -> list[dict]:
    """One record per (beta, T) of one cell, beta = 0 first."""
    preset = replace(load_preset(preset_name), bank=Bank(references=8, shadows=8))
    dm = build_datamodule(preset, seed, (forget,))
    bank = ModelBank(preset, dm, cache)
    provider = OutputsProvider(dm, cache)
    refs = bank.reference_outputs(provider)
    mask = forget_mask(refs[0].labels["V"], dm.forget_classes)
    target = torch.stack([r.probs("V")[mask] for r in refs]).mean(dim=0)
    original, _ = bank.original()
    records = []
    for beta, temperature in [(0.0, 1.0), *itertools.product(BETAS, TEMPERATURES)]:
        method = instantiate_method("trw", copy.deepcopy(original), preset, dm, seed=0)
        method.hparams.update(beta=beta, temperature=temperature)
        unlearn(method, dm)
        out = provider.of(method.model, f"trw beta={beta} T={temperature}")
        records.append({"preset": preset_name, "seed": seed, "forget": forget, "beta": beta, "temperature": temperature,
                        "tv_to_references": tv_distance(out.probs("V")[mask], target), "tilt_tv": method.tilt_tv,
                        "redundancy": rank_agreement(method.class_similarity, method.forget_base_distribution,
                                                     dm.forget_classes)})
    return records


def print_tables(records: list[dict]) -> None:
    cells = sorted({(r["preset"], r["seed"], r["forget"]) for r in records})
    control = {(r["preset"], r["seed"], r["forget"]): r["tv_to_references"] for r in records if r["beta"] == 0}
    print(f"## TRW against beta = 0 ({len(cells)} cells: presets {sorted({c[0] for c in cells})}, seeds "
          f"{sorted({c[1] for c in cells})}, forget classes {sorted({c[2] for c in cells})})\n")
    print("TV to the references' mean on V's forget samples; improvement = TV(beta = 0) - TV(setting), per cell.\n")
    print("| beta | T | TV to references | improvement over beta = 0 | cells better | sign-flip p | tilt TV | "
          "redundancy |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    settings = sorted({(r["beta"], r["temperature"]) for r in records})
    for beta, temperature in settings:
        rs = [r for r in records if (r["beta"], r["temperature"]) == (beta, temperature)]
        gains = [control[(r["preset"], r["seed"], r["forget"])] - r["tv_to_references"] for r in rs]
        p = sign_flip_p(gains) if beta > 0 else float("nan")
        print(f"| {beta:g} | {temperature:g} | {statistics.fmean(r['tv_to_references'] for r in rs):.3f} | "
              f"{statistics.fmean(gains):+.4f} | {sum(g > 0 for g in gains)}/{len(gains)} | "
              f"{'–' if beta == 0 else f'{p:.3f}'} | {statistics.fmean(r['tilt_tv'] for r in rs):.3f} | "
              f"{statistics.fmean(r['redundancy'] for r in rs):.2f} |")


def main() -> None:
    run_cell_study(__doc__.splitlines()[0], cell_records, print_tables)


if __name__ == "__main__":
    main()
