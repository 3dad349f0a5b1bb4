"""The TRW similarity study (docs/protocol.md 7): which class representation and PCA dimension rank the retained
classes the way retrained models do, and which temperature gives the smallest gap to the oracle.

    python -m benchmark.studies.trw_similarity [--quick]

The grid can be split over processes or machines: each part writes its raw scores with ``--records``
(choose its cells with ``--presets/--seeds/--forget``), and ``--from-records`` renders the tables of
the merged parts without computing anything.

Part 1, fidelity: for every (representation, PCA dimension), the Spearman correlation between TRW's
class similarity (from the original model alone) and the retained-class distribution that reference
models give to D_f; mean and std over presets' forget classes and seeds. The temperature does not
change a rank correlation, so part 2 settles it: TRW is run with each temperature and scored by its
TV distance to the oracle and its MIA-NN, both averaged over forget classes.
Everything is cached in runs/cache, so a second run only recomputes the tables.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from attacks.fidelity import similarity_fidelity
from attacks.functional import mia_nn_reference, neighbour_classes, neighbour_features, tv_distance
from benchmark.core.quiet import quiet_lightning
from benchmark.engine.bank import ModelBank
from benchmark.engine.cache import ModelCache
from benchmark.engine.cell import build_datamodule, instantiate_method, unlearn
from benchmark.engine.fitting import DEFAULT_FIT, FitSettings
from benchmark.engine.outputs import OutputsProvider
from benchmark.engine.preset import Bank, load_preset
from methods.trw import REPRESENTATIONS, class_representations, class_similarity, forget_cosines

PCA_DIMS = (None, 2, 4, 8)
TEMPERATURES = (0.03, 0.1, 0.3, 1.0)
GRID = {"digits": {"seeds": (0, 1), "forget": tuple(range(10))}, "mnist5k": {"seeds": (0,), "forget": (1, 3, 5, 8)}}
QUICK = {"digits": {"seeds": (0,), "forget": (1, 3, 8)}, "mnist5k": {"seeds": (0,), "forget": (3,)}}
REFERENCES = 4
TRW_SCHEDULE = {"lr": 0.01, "epochs": 10}


def cells(grid, cache, fit: FitSettings = DEFAULT_FIT):
    """Yield (preset name, preset, dm, bank, outputs provider) for every cell of the study."""
    for name, spec in grid.items():
        preset = replace(load_preset(name), bank=Bank(references=REFERENCES, shadows=0))
        for seed in spec["seeds"]:
            base = build_datamodule(preset, seed, (spec["forget"][0],))
            for fc in spec["forget"]:
                dm = base.with_forget_classes((fc,))
                bank = ModelBank(preset, dm, cache, fit=fit)
                yield name, preset, dm, bank, OutputsProvider(dm, cache)


def mean_std(values):
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def fidelity_records(grid, cache, fit: FitSettings = DEFAULT_FIT) -> list[dict]:
    """One record per (cell, representation, PCA dimension): the similarity's fidelity."""
    records = []
    for name, _, dm, bank, provider in cells(grid, cache, fit):
        original, _ = bank.original()
        refs = [r.probs("D_f") for r in bank.reference_outputs(provider)]
        images, labels = dm.dataset("D").tensors()
        for rep in REPRESENTATIONS:
            vectors = class_representations(original, images, labels, dm.num_classes, rep)
            for dim in PCA_DIMS:
                sim = class_similarity(forget_cosines(vectors, dm.forget_classes, dim), dm.forget_classes, 1.0)
                records.append({"preset": name, "seed": dm.seed, "forget": list(dm.forget_classes),
                                "representation": rep, "pca_dim": dim,
                                "fidelity": similarity_fidelity(sim, refs, dm.forget_classes)})
    return records


def temperature_records(grid, cache, representation, pca_dim, fit: FitSettings = DEFAULT_FIT) -> list[dict]:
    """One record per (cell, temperature): TRW's TV distance to the oracle and its MIA-NN."""
    records = []
    for name, preset, dm, bank, provider in cells(grid, cache, fit):
        original, _ = bank.original()
        oracle_out = bank.outputs(provider, "retrained", 0)
        refs = bank.reference_outputs(provider)
        neighbours = neighbour_classes([r.probs("D_f") for r in refs], dm.forget_classes)
        feats = lambda o, s, nb=neighbours: neighbour_features(o.logits[s], nb)  # noqa: E731
        for t in TEMPERATURES:
            method = instantiate_method("trw", copy.deepcopy(original), preset, dm, seed=0)
            method.hparams.update(temperature=t, representation=representation, pca_dim=pca_dim, **TRW_SCHEDULE)
            unlearn(method, dm, fit=fit)
            out = provider.of(method.model, f"trw T={t} {dm.forget_classes} {dm.seed}")
            tv = tv_distance(out.probs("D_f"), oracle_out.probs("D_f"))
            mia = mia_nn_reference([feats(r, "D_f") for r in refs], feats(out, "D_f"),
                                   [feats(r, "T_f") for r in refs], feats(out, "T_f"))
            records.append({"preset": name, "seed": dm.seed, "forget": list(dm.forget_classes), "temperature": t,
                            "representation": representation, "pca_dim": pca_dim, "tv": tv, "mia_nn": mia})
    return records


def best_representation(fidelity: list[dict]) -> tuple[str, int | None]:
    """The simplest (representation, PCA dimension) whose mean fidelity over every cell of both presets is
    within one standard error of the highest mean (the one-standard-error rule: differences smaller than
    the cell-to-cell noise do not justify an extra choice). Simplest: no PCA before any PCA, then a smaller
    dimension, then the order of ``REPRESENTATIONS``."""
    stats = {}
    for rep, dim in itertools.product(REPRESENTATIONS, PCA_DIMS):
        values = [r["fidelity"] for r in fidelity if (r["representation"], r["pca_dim"]) == (rep, dim)]
        if values:
            se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
            stats[(rep, dim)] = (statistics.fmean(values), se)
    top_mean, top_se = max(stats.values())
    eligible = [choice for choice, (mean, _) in stats.items() if mean >= top_mean - top_se]
    return min(eligible, key=lambda c: (c[1] is not None, c[1] or 0, REPRESENTATIONS.index(c[0])))


def print_tables(fidelity: list[dict], temps: list[dict]) -> None:
    def grouped(records, *keys):
        out: dict[tuple, list[dict]] = {}
        for r in records:
            out.setdefault(tuple(r[k] for k in keys), []).append(r)
        return out

    cells_of = lambda rs: len({(r["preset"], r["seed"], tuple(r["forget"])) for r in rs})  # noqa: E731
    print("## Part 1: fidelity (Spearman correlation with the references' retained-class distribution on D_f)\n")
    print("| preset | representation | PCA dim | fidelity (mean ± std) | cells |\n|---|---|---|---|---:|")
    for (name, rep, dim), rs in grouped(fidelity, "preset", "representation", "pca_dim").items():
        print(f"| {name} | {rep} | {dim or 'all'} | {mean_std([r['fidelity'] for r in rs])} | {cells_of(rs)} |")
    overall = grouped(fidelity, "representation", "pca_dim")
    (top_rep, top_dim), top = max(overall.items(), key=lambda kv: statistics.fmean(r["fidelity"] for r in kv[1]))
    best_rep, best_dim = best_representation(fidelity)
    print(f"\nHighest mean over both presets: representation={top_rep}, pca_dim={top_dim} "
          f"({mean_std([r['fidelity'] for r in top])}, {cells_of(top)} cells).")
    print(f"Chosen (simplest within one standard error of it): representation={best_rep}, pca_dim={best_dim}\n")
    if not temps:
        return
    print("## Part 2: temperature (TRW's TV to the oracle on D_f and its MIA-NN)\n")
    print("| preset | representation | T | TV (mean ± std) | MIA-NN (mean ± std) | cells |")
    print("|---|---|---:|---|---|---:|")
    for (name, rep, dim, t), rs in grouped(temps, "preset", "representation", "pca_dim", "temperature").items():
        print(f"| {name} | {rep}/{dim or 'all'} | {t} | {mean_std([r['tv'] for r in rs])} | "
              f"{mean_std([r['mia_nn'] for r in rs])} | {cells_of(rs)} |")
    by_t = {t: statistics.fmean(r["tv"] for r in rs) for (t,), rs in grouped(temps, "temperature").items()}
    print(f"\nSmallest mean TV to the oracle: T={min(by_t, key=by_t.get)}")


def chosen_grid(args) -> dict:
    grid = QUICK if args.quick else GRID
    grid = {name: spec for name, spec in grid.items() if not args.presets or name in args.presets}
    return {name: {"seeds": tuple(args.seeds or spec["seeds"]), "forget": tuple(args.forget or spec["forget"])}
            for name, spec in grid.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid (minutes), for a smoke check")
    parser.add_argument("--cache", default="runs/cache")
    parser.add_argument("--presets", nargs="+", help="only these presets of the grid")
    parser.add_argument("--seeds", nargs="+", type=int, help="these seeds instead of the grid's")
    parser.add_argument("--forget", nargs="+", type=int, help="these forget classes instead of the grid's")
    parser.add_argument("--representation", help="part 2 with this representation (default: part 1's best)")
    parser.add_argument("--pca-dim", type=int, default=None, help="part 2's PCA dimension with --representation")
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator for every fit")
    parser.add_argument("--records", help="also write the raw scores of this part to this JSON file")
    parser.add_argument("--from-records", nargs="+", help="render the tables of these merged parts; compute nothing")
    args = parser.parse_args()
    if args.from_records:
        parts = [json.loads(Path(f).read_text()) for f in args.from_records]
        print_tables([r for p in parts for r in p["fidelity"]], [r for p in parts for r in p["temperature"]])
        return
    torch.set_num_threads(2)
    grid, cache = chosen_grid(args), ModelCache(args.cache)
    fit = FitSettings(trainer_kwargs={"accelerator": args.accelerator, "devices": 1})
    with quiet_lightning():
        fidelity = fidelity_records(grid, cache, fit)
        rep, dim = (args.representation, args.pca_dim) if args.representation else best_representation(fidelity)
        temps = temperature_records(grid, cache, rep, dim, fit)
    if args.records:
        Path(args.records).write_text(json.dumps({"fidelity": fidelity, "temperature": temps}, indent=1))
    print_tables(fidelity, temps)


if __name__ == "__main__":
    main()
