"""``bench perf``: what the benchmark costs, measured side by side in one run.

Figures (keys of the JSON object printed last with ``--json``):

a. one unlearning fit (``ft`` on D_r, the suite's Lightning path with no callbacks) against a bare PyTorch loop
   doing the same epochs on the same model, batches and optimiser: ``a_suite_s``, ``a_bare_s``, ``a_ratio``
   (target <= 1.15) and ``a_max_weight_diff`` (the two results agree, so the loops did the same work);
b. training 16 bank models the suite's way (one group in one Lightning loop, :mod:`benchmark.engine.stacked`) against
   16 sequential fits: ``b_stacked_s``, ``b_sequential_s``, ``b_speedup`` (target >= 3), ``b_max_weight_diff``
   (0: the same models), and the vectorised ``vmap`` stack for comparison: ``b_vmap_s``, ``b_vmap_max_weight_diff``;
c. inference passes per model and split during a full cell: ``c_max_passes`` and ``c_min_passes`` (target 1);
d. the wall time of a grid run (``bench run --methods ...`` on the preset, fresh cache) split into bank training,
   unlearning, U-LiRA shadow unlearning and the rest (attacks, outputs, data), with its peak memory;
e. how the cost grows with the bank size (S = M = 4, 8, 16, 32) and with the dataset size (a quarter, half
   and all of D): ``e_bank_size_s`` and ``e_dataset_size_s``;
f. figure d's U-LiRA shadow unlearning against its unlearning: ``f_ratio`` (target <= 2, while the in-shadows
   are S times the cell's own fits: ``f_fits_ratio``);
g. whole grids, every forget class x 3 seeds with every method: digits' 30 cells and mnist5k's 12 (forget
   classes 1, 3, 5, 8), fresh cache, with d's breakdown: ``g_digits`` and ``g_mnist5k`` (targets: 15 and 60
   minutes on 2 CPU cores). An hour and more on such a machine: ``bench perf --only g`` runs them alone;
h. the suite's grouped fit of 8 bank models against a bare PyTorch loop training the same 8 models on the
   same batches in the same order: ``h_suite_s``, ``h_bare_s``, ``h_ratio`` (target <= 1.3) and
   ``h_max_weight_diff`` (0: the same work);
j. the preset model's memory layout: one bank model's epochs as a bare loop with channels-last weights and
   inputs against the default (contiguous) layout, same batches: ``j_channels_last_s``, ``j_contiguous_s``,
   ``j_speedup`` and ``j_layout``, the layout the model is registered with (``small_cnn`` and ``fast_resnet``
   train channels-last because this figure says it pays on CPU).
k. the probes that run models (the relearning and representation probes, :mod:`attacks.probes`) against the rest
   of one cell (the preset's first forget classes, seed 0, ``--methods``, the bank trained beforehand in a fresh
   cache and not counted): ``k_probes_s`` (every row's probes on its own model, plus the oracle's and the
   null's once), ``k_rest_s`` (the rows' ``cell_s`` less the probes), ``k_share`` and ``k_parts_s`` per probe.
l. augmented training batches (the paper-scale presets' random crop and flip) on CIFAR-shaped synthetic images:
   one epoch of the suite's loader (a batch gathered, then cropped and flipped as one tensor operation from the
   loader's own generator) against the per-sample path it replaced (each image cropped from the global RNG, then
   collated): ``l_batched_s``, ``l_per_sample_s``, ``l_speedup``, ``l_images`` and ``l_batch_size``.

Grid runs (d, e) happen in child processes, each with a fresh cache, so their peak memory is their own.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.core.quiet import quiet_lightning
from benchmark.engine.preset import Bank, Preset, load_preset

BENCH_METHOD = "ft"  # figure a's method: the plainest fine-tune, so the fit is all loop and no method logic


@dataclasses.dataclass(frozen=True)
class PerfPlan:
    """How big each measurement is: the full plan, or the quick one that the tests run."""

    stack_size: int = 16
    stack_epochs: int | None = None  # None: the preset's recipe
    repeats: int = 3
    stack_repeats: int = 1
    bank_sizes: tuple[int, ...] = (4, 8, 16, 32)
    curve_epochs: int | None = None
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)
    grid_forget_classes: tuple[int, ...] | None = None  # None: the preset's
    grid_epochs: int | None = None  # None: the preset's recipe
    augment_images: int = 45_000  # figure l: a CIFAR-10 training split's worth

    @classmethod
    def quick(cls) -> PerfPlan:
        return cls(stack_size=4, stack_epochs=1, repeats=1, bank_sizes=(2, 4), curve_epochs=1,
                   fractions=(0.5, 1.0), grid_forget_classes=(3,), grid_epochs=1, augment_images=2048)


def _best_of(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``repeats`` timed runs (the least disturbed by other processes) and its result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = run()
        seconds = time.perf_counter() - start
        if seconds < best:
            best, result = seconds, value
    return best, result


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sb = b.state_dict()
    return max(float((v.double() - sb[k].double()).abs().max()) for k, v in a.state_dict().items())


# -- a: one unlearning fit, Lightning against a bare loop ------------------------------------------------------
def bare_fine_tune(model: torch.nn.Module, loader, hparams) -> torch.nn.Module:
    """``ft``'s epochs as a plain PyTorch loop over in-memory tensors, with the batches ``loader`` would give.

    Each epoch draws from the loader's generator what DataLoader and RandomSampler draw (a base seed, the
    permutation, and the sampler's empty remainder permutation) and slices the normalised tensors, so the
    result equals the suite's fit exactly (``a_max_weight_diff`` is 0 on a CPU): both loops did the same work.
    """
    images, labels = loader.dataset.tensors()
    generator, batch = loader.generator, loader.batch_size
    optimiser = torch.optim.SGD(model.parameters(), lr=hparams.lr, momentum=hparams.momentum,
                                weight_decay=hparams.weight_decay)
    model.train()
    for _ in range(hparams.epochs):
        torch.empty((), dtype=torch.int64).random_(generator=generator)  # DataLoader's per-epoch base seed
        order = torch.randperm(len(labels), generator=generator)
        torch.randperm(len(labels), generator=generator)  # RandomSampler's trailing (empty) partial permutation
        for start in range(0, len(order), batch):
            take = order[start:start + batch]
            optimiser.zero_grad()
            F.cross_entropy(model(images[take]), labels[take]).backward()
            optimiser.step()
    return model


def figure_a(preset: Preset, dm, bank, plan: PerfPlan) -> dict[str, float]:
    from benchmark.engine.cell import instantiate_method, unlearn

    original, _ = bank.original()
    seed = 11

    def suite():
        method = instantiate_method(BENCH_METHOD, copy.deepcopy(original), preset, dm, seed=seed)
        unlearn(method, dm)
        return method.model

    def bare():
        method = instantiate_method(BENCH_METHOD, copy.deepcopy(original), preset, dm, seed=seed)
        if method.hparams.scheduler != "constant" or method.hparams.optimizer != "sgd":
            raise ValueError(f"figure a's bare loop mirrors constant-rate SGD; {BENCH_METHOD} uses {method.hparams}")
        loader = dm.retain_dataloader(batch_size=method.hparams.batch_size, seed=seed)
        return bare_fine_tune(method.model, loader, method.hparams)

    suite(), bare()  # warm-up: first calls pay for imports and allocator growth
    suite_s, bare_s = float("inf"), float("inf")
    for _ in range(plan.repeats):  # interleaved, so a burst of load from other processes hits both alike
        s, suite_model = _best_of(1, suite)
        b, bare_model = _best_of(1, bare)
        suite_s, bare_s = min(suite_s, s), min(bare_s, b)
    return {"a_suite_s": suite_s, "a_bare_s": bare_s, "a_ratio": suite_s / bare_s,
            "a_max_weight_diff": _max_diff(suite_model, bare_model)}


# -- b: a stack of bank models against sequential fits -----------------------------------------------------------
def figure_b(preset: Preset, dm, cache, plan: PerfPlan) -> dict[str, float]:
    from benchmark.engine.bank import ModelBank
    from benchmark.engine.fitting import FitSettings
    from benchmark.engine.stacked import fit_stack, stack_refusal
    from benchmark.engine.training import fit_classifier, seeded_build

    train = preset.train if plan.stack_epochs is None else dataclasses.replace(preset.train, epochs=plan.stack_epochs)
    short = dataclasses.replace(preset, train=train, bank=Bank(references=0, shadows=plan.stack_size - 1))
    bank = ModelBank(short, dm, cache)
    members = bank.stackable()[0]  # the original and its in-shadows: all trained on D
    refusal = stack_refusal(bank.new_model())

    def build():
        return [seeded_build(bank.new_model, bank.member_seed(*m))() for m in members]

    def sequential():
        models = build()
        for model, member in zip(models, members, strict=True):
            fit_classifier(model, bank.member_loader(*member), train, seed=bank.member_seed(*member))
        return models

    def stacked(vectorise: bool = False):
        if refusal:  # the suite falls back to sequential fits for models it cannot group exactly
            return sequential()
        models = build()
        fit_stack(models, [bank.member_loader(*m) for m in members], train, vectorise=vectorise)
        return models

    warm = dataclasses.replace(train, epochs=1)  # first calls pay for vmap's and Lightning's one-off set-up
    two_steps = FitSettings(trainer_kwargs={"limit_train_batches": 2})
    for vectorise in (False, True):
        fit_stack(build()[:2], [bank.member_loader(*m) for m in members[:2]], warm, fit=two_steps,
                  vectorise=vectorise)
    fit_classifier(build()[0], bank.member_loader(*members[0]), warm, seed=0, fit=two_steps)
    stacked_s, sequential_s = float("inf"), float("inf")
    for _ in range(plan.stack_repeats):  # interleaved, so a burst of load from other processes hits both alike
        s, stacked_models = _best_of(1, stacked)
        q, sequential_models = _best_of(1, sequential)
        stacked_s, sequential_s = min(stacked_s, s), min(sequential_s, q)
    vmap_s, vmap_models = _best_of(1, lambda: stacked(vectorise=True))

    def max_diff(models):
        return max(_max_diff(a, b) for a, b in zip(models, sequential_models, strict=True))

    return {"b_models": len(members), "b_epochs": train.epochs, "b_stacked_s": stacked_s,
            "b_sequential_s": sequential_s, "b_speedup": sequential_s / stacked_s,
            "b_max_weight_diff": max_diff(stacked_models), "b_stacked": refusal is None,
            "b_vmap_s": vmap_s, "b_vmap_max_weight_diff": max_diff(vmap_models)}


# -- h: a grouped fit of 8 bank models against a bare loop -----------------------------------------------------------
def loader_order(loader) -> Any:
    """The batches' sample indices of one epoch of a shuffled DataLoader, drawn from its generator exactly as
    DataLoader and RandomSampler draw them (a base seed, the permutation, the sampler's empty remainder)."""
    n, generator = len(loader.dataset), loader.generator
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    order = torch.randperm(n, generator=generator)
    torch.randperm(n, generator=generator)
    return order.split(loader.batch_size)


def bare_group(models: Sequence[torch.nn.Module], loaders: Sequence[Any], recipe) -> None:
    """The bank's recipe (SGD, momentum, weight decay, per-epoch cosine) for every member, as plain PyTorch
    over in-memory tensors: per step, each member's forward, backward and step on its own next batch."""
    optimisers = [torch.optim.SGD(m.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                  weight_decay=recipe.weight_decay) for m in models]
    schedules = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=recipe.epochs) for o in optimisers]
    data = [loader.dataset.tensors() for loader in loaders]
    for model in models:
        model.train()
    for _ in range(recipe.epochs):
        orders = [loader_order(loader) for loader in loaders]
        for step in zip(*orders, strict=True):
            for model, optimiser, (images, labels), take in zip(models, optimisers, data, step, strict=True):
                optimiser.zero_grad()
                F.cross_entropy(model(images[take]), labels[take]).backward()
                optimiser.step()
        for schedule in schedules:
            schedule.step()


def figure_h(preset: Preset, dm, plan: PerfPlan) -> dict[str, float]:
    from benchmark.engine.bank import ModelBank
    from benchmark.engine.stacked import fit_stack
    from benchmark.engine.training import seeded_build

    train = preset.train if plan.stack_epochs is None else dataclasses.replace(preset.train, epochs=plan.stack_epochs)
    if (train.optimizer, train.scheduler) != ("sgd", "cosine"):
        raise ValueError(f"figure h's bare loop mirrors SGD with a cosine schedule; {preset.name} trains with "
                         f"{train.optimizer}, {train.scheduler}")
    bank = ModelBank(dataclasses.replace(preset, train=train, bank=Bank(references=0, shadows=7)), dm, cache=None)
    members = bank.stackable()[0]

    def build():
        return [seeded_build(bank.new_model, bank.member_seed(*m))() for m in members]

    def suite():
        models = build()
        fit_stack(models, [bank.member_loader(*m) for m in members], train)
        return models

    def bare():
        models = build()
        bare_group(models, [bank.member_loader(*m) for m in members], train)
        return models

    suite_s, bare_s = float("inf"), float("inf")
    for _ in range(plan.stack_repeats):  # interleaved, so a burst of load from other processes hits both alike
        s, suite_models = _best_of(1, suite)
        b, bare_models = _best_of(1, bare)
        suite_s, bare_s = min(suite_s, s), min(bare_s, b)
    diff = max(_max_diff(a, b) for a, b in zip(suite_models, bare_models, strict=True))
    return {"h_models": len(members), "h_epochs": train.epochs, "h_suite_s": suite_s, "h_bare_s": bare_s,
            "h_ratio": suite_s / bare_s, "h_max_weight_diff": diff}


def figure_j(preset: Preset, dm, plan: PerfPlan) -> dict[str, Any]:
    from benchmark.engine.bank import ModelBank
    from benchmark.engine.models import model_layout
    from benchmark.engine.training import seeded_build

    train = dataclasses.replace(preset.train, epochs=plan.stack_epochs or 2)
    bank = ModelBank(preset, dm, cache=None)
    member = bank.stackable()[0][0]

    def fit(layout: torch.memory_format) -> torch.nn.Module:
        model = seeded_build(bank.new_model, bank.member_seed(*member))().to(memory_format=layout)
        if hasattr(model, "channels_last"):
            model.channels_last = layout is torch.channels_last
        bare_group([model], [bank.member_loader(*member)], train)
        return model

    last_s, plain_s = float("inf"), float("inf")
    for _ in range(plan.repeats):  # interleaved, as in h
        last_s = min(last_s, _best_of(1, lambda: fit(torch.channels_last))[0])
        plain_s = min(plain_s, _best_of(1, lambda: fit(torch.contiguous_format))[0])
    return {"j_model": preset.model, "j_epochs": train.epochs, "j_channels_last_s": last_s,
            "j_contiguous_s": plain_s, "j_speedup": plain_s / last_s,
            "j_layout": model_layout(preset.model).get("memory_format", "contiguous")}


# -- k: the probes' time in one cell ------------------------------------------------------------------------------
def probe_seconds(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per probe, the seconds its records took to compute over one cell's ``rows`` (``probe_compute_s`` in their
    diagnostics): each row's own model, and the oracle and the null once (every row of a cell names the same)."""
    parts: dict[str, dict[str, float]] = {}
    for row in rows:
        for probe, seconds in row["diagnostics"].get("probe_compute_s", {}).items():
            part = parts.setdefault(probe, {"method": 0.0})
            part["method"] += seconds.get("method", 0.0)
            for shared in ("oracle", "null"):
                part[shared] = seconds.get(shared, part.get(shared, 0.0))
    return parts


def figure_k(preset: Preset, dm, methods: str, plan: PerfPlan) -> dict[str, Any]:
    from benchmark.engine.bank import ModelBank
    from benchmark.engine.cache import ModelCache
    from benchmark.engine.cell import Cell, run_cell
    from benchmark.engine.outputs import OutputsProvider
    from methods.base import resolve_methods

    train = preset.train if plan.grid_epochs is None else dataclasses.replace(preset.train, epochs=plan.grid_epochs)
    bank = Bank(references=2, shadows=2) if plan.grid_forget_classes else preset.bank  # as figure d's
    sized = dataclasses.replace(preset, train=train, bank=bank)
    with tempfile.TemporaryDirectory() as tmp:  # its own cache: no probe record of another figure is reused
        cache = ModelCache(tmp)
        cell = Cell(sized, dm, ModelBank(sized, dm, cache), OutputsProvider(dm, cache))
        bank_s, _ = _best_of(1, cell.bank.train_missing)
        rows = [run_cell(cell, name) for name in resolve_methods(methods)]
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        raise RuntimeError(f"figure k's cell failed: {failed[0].get('error')}")
    parts = probe_seconds(rows)
    probes_s = sum(sum(part.values()) for part in parts.values())
    cell_s = sum(r["diagnostics"]["cell_s"] for r in rows)
    return {"k_methods": len(rows), "k_bank": dataclasses.asdict(bank), "k_probes_s": round(probes_s, 3),
            "k_rest_s": round(cell_s - probes_s, 3), "k_share": probes_s / cell_s,
            "k_parts_s": {p: {k: round(v, 3) for k, v in part.items()} for p, part in parts.items()},
            "k_bank_training_s": round(bank_s, 3)}


# -- c: inference passes in one cell ------------------------------------------------------------------------------
def figure_c(preset: Preset, dm, cache, plan: PerfPlan) -> dict[str, float]:
    from benchmark.engine.bank import ModelBank
    from benchmark.engine.cell import Cell, run_cell
    from benchmark.engine.outputs import OutputsProvider

    train = preset.train if plan.grid_epochs is None else dataclasses.replace(preset.train, epochs=plan.grid_epochs)
    small = dataclasses.replace(preset, train=train, bank=Bank(references=2, shadows=2))
    cell = Cell(small, dm, ModelBank(small, dm, cache), OutputsProvider(dm, cache))
    cell.bank.train_missing()
    row = run_cell(cell, BENCH_METHOD)
    if row is None or row["status"] != "ok":
        raise RuntimeError(f"figure c's cell did not finish: {row and row.get('error')}")
    passes = cell.outputs.passes.values()
    return {"c_max_passes": max(passes), "c_min_passes": min(passes), "c_model_splits": len(cell.outputs.passes)}


# -- d, e: instrumented grid runs in child processes ---------------------------------------------------------------
def instrumented_grid(preset: Preset, methods: Sequence[str], forget_classes: Sequence[Sequence[int]] | None,
                      seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Run the grid (forget-class sets x seeds; None: the preset's) in a fresh temporary cache and time the
    engine's named phases (bank training, unlearning, shadow unlearning; the rest is attacks, outputs, data and
    set-up), with this process's peak memory."""
    from benchmark.engine.fitting import FitSettings
    from benchmark.engine.grid import Display, RunPaths, run_benchmark
    from benchmark.engine.phases import PhaseTimer

    timer = PhaseTimer()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with timer.phase("attacks_and_rest"):  # whatever no inner phase claims
            summary = run_benchmark(preset, list(methods), forget_classes=forget_classes, seeds=seeds,
                                    paths=RunPaths(out=f"{tmp}/run", cache=f"{tmp}/cache"),
                                    fit=FitSettings(phases=timer), display=Display(progress=False))
        total = time.perf_counter() - start
    failed = [r for r in summary.rows if r["status"] == "failed"]
    if failed:
        raise RuntimeError(f"perf grid: {len(failed)} cells failed, first: {failed[0].get('error')}")
    cells = len({(tuple(r["forget_classes"]), r["seed"]) for r in summary.rows})
    return {"total_s": total, **{f"{k}_s": v for k, v in timer.seconds.items()}, "rows": len(summary.rows),
            "cells": cells,
            "models_trained": summary.trained_models,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child_grid(preset_name: str, methods: str, *, bank_size: int | None = None, epochs: int | None = None,
                forget_classes: Sequence[int] | None = None, cells: Sequence[int] | None = None,
                seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """:func:`instrumented_grid` in a fresh Python process; its JSON answer.

    Args:
        forget_classes: one cell forgetting these classes together; or
        cells: one cell per class, each forgetting that class alone (with ``seeds``: per seed).
    """
    args = [sys.executable, "-m", "benchmark.studies.perf", "--grid", "--preset", preset_name, "--methods", methods]
    if bank_size is not None:
        args += ["--bank-size", str(bank_size)]
    if epochs is not None:
        args += ["--epochs", str(epochs)]
    if forget_classes:
        args += ["--forget-classes", ",".join(map(str, forget_classes))]
    if cells:
        args += ["--cells", ",".join(map(str, cells))]
    if seeds:
        args += ["--seeds", ",".join(map(str, seeds))]
    env = os.environ | {"OMP_NUM_THREADS": str(torch.get_num_threads())}  # the parent's thread setting
    done = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"perf grid child failed ({' '.join(args)}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def figure_d(preset_name: str, methods: str, plan: PerfPlan) -> dict[str, float]:
    grid = _child_grid(preset_name, methods, forget_classes=plan.grid_forget_classes, epochs=plan.grid_epochs,
                       bank_size=2 if plan.grid_forget_classes else None)
    return {f"d_{k}": v for k, v in grid.items()}


def figure_f(d: dict[str, Any], preset: Preset, plan: PerfPlan) -> dict[str, float]:
    """From figure d's grid: U-LiRA's shadow unlearning against the cell's own unlearning."""
    shadows = 2 if plan.grid_forget_classes else preset.bank.shadows  # figure d's bank
    return {"f_shadow_unlearning_s": d["d_shadow_unlearning_s"], "f_unlearning_s": d["d_unlearning_s"],
            "f_ratio": d["d_shadow_unlearning_s"] / d["d_unlearning_s"], "f_fits_ratio": shadows, "f_target": 2.0}


# The grids: every forget class (mnist5k: four of them) x 3 seeds, every method; targets in minutes.
GRIDS = {"digits": (tuple(range(10)), (0, 1, 2), 15), "mnist5k": ((1, 3, 5, 8), (0, 1, 2), 60)}


def figure_g(methods: str, plan: PerfPlan) -> dict[str, Any]:
    """Whole grids in fresh caches (the quick plan: two one-epoch cells of digits with a bank of 2)."""
    figures = {}
    for name, (classes, seeds, target_min) in GRIDS.items():
        if plan.grid_forget_classes:
            if name != "digits":
                continue
            classes, seeds = classes[:2], seeds[:1]
        grid = _child_grid(name, methods, cells=classes, seeds=seeds, epochs=plan.grid_epochs,
                           bank_size=2 if plan.grid_forget_classes else None)
        figures[f"g_{name}"] = {**{k: round(v, 3) if isinstance(v, float) else v for k, v in grid.items()},
                                "minutes": round(grid["total_s"] / 60, 2), "target_minutes": target_min}
    return figures


def figure_e(preset: Preset, dm, plan: PerfPlan) -> dict[str, Any]:
    """Bank size: one ``ft`` cell's grid per S (= M), timed; dataset size: one 8-model stack per share of D."""
    curve = {}
    for size in plan.bank_sizes:
        grid = _child_grid(preset.name, BENCH_METHOD, bank_size=size, epochs=plan.curve_epochs,
                           forget_classes=(preset.forget_classes[0]))
        curve[str(size)] = {k: round(v, 3) for k, v in grid.items() if k.endswith("_s")}
    return {"e_bank_size_s": curve, "e_dataset_size_s": _dataset_curve(preset, dm, plan)}


def _dataset_curve(preset: Preset, dm, plan: PerfPlan) -> dict[str, float]:
    from benchmark.engine.bank import ModelBank
    from benchmark.engine.stacked import fit_stack
    from benchmark.engine.training import seeded_build

    train = preset.train if plan.curve_epochs is None else dataclasses.replace(preset.train, epochs=plan.curve_epochs)
    full = dm.dataset("D")
    bank = ModelBank(preset, dm, cache=None)
    curve = {}
    for fraction in plan.fractions:
        part = copy.copy(full)
        part.indices = full.indices[: max(int(len(full) * fraction), train.batch_size)]
        models = [seeded_build(bank.new_model, k)() for k in range(8)]
        loaders = [dm.loader(part, shuffle=True, batch_size=train.batch_size, seed=k) for k in range(8)]
        curve[str(len(part))] = round(_best_of(1, lambda ms=models, ls=loaders: fit_stack(ms, ls, train))[0], 3)
    return curve


# -- the command ----------------------------------------------------------------------------------------------------
# -- l: augmented batches, batched against per sample --------------------------------------------------------------
class _PerSampleCrops(torch.utils.data.Dataset):
    """The per-sample augmentation the batched crop replaced: one image normalised, padded, cropped at offsets
    from the global RNG and flipped at a time, for ``default_collate`` to stack."""

    def __init__(self, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.images, self.mean, self.std = images, mean.view(-1, 1, 1), std.view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = (self.images[i].float() / 255.0 - self.mean) / self.std
        padded = F.pad(x, (4, 4, 4, 4))
        row, col = torch.randint(0, 9, (2,)).tolist()
        x = padded[:, row:row + 32, col:col + 32]
        return x.flip(-1) if torch.rand(()) < 0.5 else x


def figure_l(plan: PerfPlan) -> dict[str, Any]:
    from datamodules.base import TensorImageDataset, collate_batch

    images = torch.randint(0, 256, (plan.augment_images, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(len(images), dtype=torch.long)
    mean, std = torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26])
    batched = TensorImageDataset(images, labels, torch.arange(len(images)).numpy(), mean, std, augment=True,
                                 augment_seed=1)
    batch = 512
    loaders = {"batched": torch.utils.data.DataLoader(batched, batch_size=batch, shuffle=True,
                                                      collate_fn=collate_batch),
               "per_sample": torch.utils.data.DataLoader(_PerSampleCrops(images, mean, std), batch_size=batch,
                                                         shuffle=True)}
    seconds = {name: float("inf") for name in loaders}
    for _ in range(plan.repeats):  # interleaved
        for name, loader in loaders.items():
            seconds[name] = min(seconds[name], _best_of(1, lambda loader=loader: sum(1 for _ in loader))[0])
    return {"l_batched_s": seconds["batched"], "l_per_sample_s": seconds["per_sample"],
            "l_speedup": seconds["per_sample"] / seconds["batched"], "l_images": len(images), "l_batch_size": batch}


FIGURE_NAMES = ("a", "b", "c", "d", "e", "f", "g", "h", "j", "k", "l")


def run_perf(preset_name: str, *, methods: str = "all", quick: bool = False, only: Sequence[str] = FIGURE_NAMES,
             report: Callable[[str, dict[str, Any]], None] = lambda name, figures: None) -> dict[str, Any]:
    """Measure the figures ``only`` names (default all); ``report(name, figures)`` is called as each is done.

    Args:
        preset_name: the preset to measure (figures a to f and h; g runs its own presets).
        methods: the methods of figures d, g and k (``all`` is the issue's figure; a list makes it quicker).
        quick: a small plan (few models, epochs and bank sizes) for tests and smoke runs.
        only: the figures to measure (f needs d, and measures it if not asked).
        report: called with each figure's name and values as soon as they exist.
    """
    from benchmark.engine.cache import ModelCache
    from benchmark.engine.cell import build_datamodule

    plan = PerfPlan.quick() if quick else PerfPlan()
    preset = load_preset(preset_name)
    dm = build_datamodule(preset, seed=0, forget_classes=preset.forget_classes[0])
    figures: dict[str, Any] = {"preset": preset.name, "quick": quick, "threads": torch.get_num_threads(),
                               "d_methods": methods}
    with tempfile.TemporaryDirectory() as tmp, quiet_lightning():
        cache = ModelCache(tmp)
        from benchmark.engine.bank import ModelBank

        steps = [("a", lambda: figure_a(preset, dm, ModelBank(preset, dm, cache), plan)),
                 ("b", lambda: figure_b(preset, dm, cache, plan)),
                 ("c", lambda: figure_c(preset, dm, cache, plan)),
                 ("d", lambda: figure_d(preset.name, methods, plan)),
                 ("e", lambda: figure_e(preset, dm, plan)),
                 ("f", lambda: figure_f(figures if "d_total_s" in figures else figure_d(preset.name, methods, plan),
                                        preset, plan)),
                 ("g", lambda: figure_g(methods, plan)),
                 ("h", lambda: figure_h(preset, dm, plan)),
                 ("j", lambda: figure_j(preset, dm, plan)),
                 ("k", lambda: figure_k(preset, dm, methods, plan)),
                 ("l", lambda: figure_l(plan))]
        for name, measure in steps:
            if name not in only:
                continue
            values = measure()
            figures.update(values)
            report(name, values)
    return figures


def _grid_main(args: argparse.Namespace) -> None:
    """The child side of figures d and e: one instrumented grid, its JSON on the last line."""
    from methods.base import resolve_methods

    preset = load_preset(args.preset)
    if args.bank_size is not None:
        preset = dataclasses.replace(preset, bank=Bank(references=args.bank_size, shadows=args.bank_size))
    if args.epochs is not None:
        preset = dataclasses.replace(preset, train=dataclasses.replace(preset.train, epochs=args.epochs))
    forget = [[int(c) for c in args.forget_classes.split(",")]] if args.forget_classes else None
    if args.cells:
        forget = [[int(c)] for c in args.cells.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    print(json.dumps(instrumented_grid(preset, resolve_methods(args.methods), forget, seeds)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="internal: one instrumented grid run for `bench perf`")
    parser.add_argument("--grid", action="store_true", required=True)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--methods", default="all")
    parser.add_argument("--bank-size", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--forget-classes")
    parser.add_argument("--cells")
    parser.add_argument("--seeds")
    _grid_main(parser.parse_args())
