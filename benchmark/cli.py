"""The ``bench`` command: thin wrappers over the library functions.

    bench run [--preset NAME] [--methods all|a,b,c] [--forget-classes 3 8 | 3,5] [--seeds 0 1] [--out DIR]
    bench tune [--preset NAME] [--methods all|a,b] [--trials N] [--objective privacy|utility] [--study DIR] [--write]
    bench rescore DIR [DIR ...] [--out OUT] [--cache CACHE] [--neighbours K] [--nn-feature F] ...
    bench score DIR [--json] [--neighbours K] [--nn-feature F] ...
    bench list
    bench leaderboard [--runs DIR ...] [--output leaderboard.md] [--check]
    bench perf [--preset NAME] [--methods all|a,b,c] [--quick] [--json] [--threads N] [--only a,b,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import shlex
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from attacks import AttackOptions, AttackOptionsError
from attacks.functional import FEATURE_KINDS, MIA_SIGNALS
from benchmark.core.errors import BenchError, ConfigError, refuse_repeats
from benchmark.core.interrupts import Received, signals_interrupt
from benchmark.core.registry import unknown_name_message
from benchmark.core.writable import check_writable
from benchmark.engine.preset import DEFAULT_PRESET, Bank, load_preset, preset_names
from benchmark.report.leaderboard import render_markdown, rich_tables
from benchmark.report.store import RESULTS_FILE, read_rows
from datamodules import DATAMODULES
from methods.base import load_plugin, method_names, resolve_methods

LEADERBOARD_FILE = "leaderboard.md"
USER_ERRORS = (BenchError, AttackOptionsError)  # mistakes the user can fix from the message; the rest are bugs


def parse_forget_classes(values: list[str] | None) -> list[tuple[int, ...]] | None:
    """``["3", "8"]`` -> two cells forgetting 3 and 8; ``["3,5"]`` -> one cell forgetting both."""
    if not values:
        return None
    try:
        sets = [tuple(int(c) for c in v.split(",") if c.strip()) for v in values]
    except ValueError:
        raise ConfigError(f"--forget-classes takes class ids like '3' or '3,5', got {values}") from None
    for fc in sets:
        if not fc:
            raise ConfigError(f"--forget-classes {' '.join(map(repr, values))}: a forget-class set is empty; "
                             "name at least one class, like '3' or '3,5'")
        refuse_repeats("--forget-classes " + ",".join(map(str, fc)), fc, "class")
    refuse_repeats("--forget-classes", [tuple(sorted(fc)) for fc in sets], "forget-class set")
    return sets


# set by the benchmark itself for every fit; a user's value would be silently replaced or collide
RESERVED_TRAINER_ARGS = frozenset({"max_epochs", "callbacks", "logger", "enable_checkpointing", "enable_progress_bar",
                                   "enable_model_summary", "num_sanity_val_steps"})


DEVICES_HELP = "a positive count like 2, device ids like '0,1' (one id: '0,'), -1 for all, or auto"


def parse_devices(text: str) -> int | str:
    """``--devices 2`` -> 2; ``auto``, ``0,1`` (device ids) and ``-1`` (all) as Lightning takes them."""
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def check_devices(value, flag: str = "--devices") -> None:
    """Refuse what Lightning would refuse only when the first Trainer is built, with a traceback: zero or
    negative counts (but -1), ids that are not non-negative integers, an id given twice."""
    if value == "auto" or (type(value) is int and (value >= 1 or value == -1)):  # type(): True is no count
        return
    ids = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
    ids = [i.strip() if isinstance(i, str) else i for i in ids]
    ids = [i for i in ids if i != ""]  # '0,' is the one-id list [0]
    if not ids or not all(type(i) is int and i >= 0 or isinstance(i, str) and i.isdigit() for i in ids):
        raise ConfigError(f"{flag} must be {DEVICES_HELP}; got {value!r}")
    refuse_repeats(flag, [int(i) for i in ids], "device id")


def trainer_parameters() -> list[str]:
    """The keyword arguments ``lightning.Trainer`` accepts, from its signature (so a new Lightning's new
    arguments are accepted without a change here)."""
    import inspect

    import lightning as L

    return [name for name in inspect.signature(L.Trainer.__init__).parameters if name != "self"]


def check_trainer_key(key: str) -> None:
    """``--trainer KEY=...``: KEY must be a Trainer argument the benchmark does not set itself."""
    if key in RESERVED_TRAINER_ARGS:
        raise ConfigError(f"--trainer {key}: the benchmark sets {key} itself for every fit")
    known = [name for name in trainer_parameters() if name not in RESERVED_TRAINER_ARGS]
    if key not in known:
        raise ConfigError("--trainer: " + unknown_name_message("Lightning Trainer argument", key, known))


def trainer_arguments(args: argparse.Namespace) -> dict:
    """The Lightning Trainer arguments for every fit: the named options, then ``--trainer KEY=VALUE``
    (values read as YAML, so ``true``, ``1.0`` and ``[0, 1]`` arrive typed). Applies ``--threads`` too."""
    import yaml

    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)

    kwargs: dict = {"accelerator": args.accelerator, "devices": parse_devices(args.devices)}
    if args.strategy is not None:
        kwargs["strategy"] = args.strategy
    if args.num_nodes is not None:
        kwargs["num_nodes"] = args.num_nodes
    if args.precision is not None:
        kwargs["precision"] = args.precision
    origin: dict[str, str] = {}  # the flag each overridden value came from, for the error messages
    for item in args.trainer or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--trainer takes KEY=VALUE (a Lightning Trainer argument), got {item!r}")
        check_trainer_key(key)
        kwargs[key] = yaml.safe_load(value)
        origin[key] = f"--trainer {key}"
    check_devices(kwargs["devices"], origin.get("devices", "--devices"))
    num_nodes = kwargs.get("num_nodes", 1)
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ConfigError(f"{origin.get('num_nodes', '--num-nodes')} must be a positive number of machines, "
                          f"got {num_nodes}")
    return kwargs


def run_loggers(args: argparse.Namespace):
    """The ``--logger`` choices as the command's Lightning loggers (a missing package fails here, before any
    work), or None: no logger, as without the flag."""
    if not args.logger:
        return None
    from benchmark.engine.loggers import RunLoggers

    return RunLoggers(args.logger)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from benchmark.core.distributed import is_writer
    from benchmark.engine.callbacks import declared_metrics
    from benchmark.engine.fitting import FitSettings, check_trainer_settings
    from benchmark.engine.grid import Display, RunPaths, run_benchmark  # imports Lightning: only when running
    from benchmark.engine.shard import Shard

    if args.verbose:  # Lightning's own messages (its INFO banners) on top of the per-cell lines
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.INFO)
    for module in args.plugin or []:
        load_plugin(module)
    preset = load_preset(args.preset, tuned=not args.untuned)
    if args.references is not None or args.shadows is not None:
        bank = Bank(references=preset.bank.references if args.references is None else args.references,
                    shadows=preset.bank.shadows if args.shadows is None else args.shadows)
        preset = dataclasses.replace(preset, bank=bank)
    options = attack_options(args)
    methods = resolve_methods(args.methods)
    refuse_repeats("--seeds", args.seeds or [], "seed")
    if any(seed < 0 for seed in args.seeds or []):
        raise ConfigError(f"--seeds must be non-negative integers, got {args.seeds}")
    fit = FitSettings(trainer_kwargs=trainer_arguments(args), stacking=args.stacking, loggers=run_loggers(args))
    check_trainer_settings(fit)
    shard = Shard.parse(args.shard)
    forget_classes = parse_forget_classes(args.forget_classes)
    # last, as they create the directories: a cache or run directory that cannot be written fails now,
    # not after the first models have trained
    out = check_writable(args.out or Path("runs") / preset.name, "--out")
    cache = check_writable(args.cache or Path("runs") / "cache", "--cache")
    args.kept = functools.partial(kept_summary, rows=out, cache=cache)
    summary = run_benchmark(preset, methods, forget_classes=forget_classes,
                            seeds=args.seeds, options=options, shard=shard,
                            paths=RunPaths(out=out, cache=cache, data_root=args.data_root), fit=fit,
                            display=Display(progress=not args.quiet, console=console if not args.quiet else None,
                                            on_row=(lambda row: console.print(row_line(row))) if args.verbose else None,
                                            lightning_messages=args.verbose),
                            command=args.command_line)
    failed = [r for r in summary.rows if r["status"] == "failed"]
    if not is_writer():  # every rank ran the grid; rank 0 reports it
        return 1 if failed else 0
    rows = read_rows(Path(summary.out_dir) / RESULTS_FILE)
    for table in rich_tables([r for r in rows if r["preset"] == preset.name], declared_metrics()):
        console.print(table)
    for row in failed:
        where = f"{row['method']} forget {row['forget_classes']} seed {row['seed']} failed: "
        console.print(Text(where, style="red") + Text(row["error"]))
    others = f", {summary.other_shards} cells left to other shards" if summary.other_shards else ""
    console.print(f"{len(summary.rows)} new rows ({summary.skipped} cells already done, "
                  f"{summary.trained_models} models trained{others}) -> {Path(summary.out_dir) / RESULTS_FILE}; "
                  f"models in {args.cache or 'runs/cache'}; `bench leaderboard --runs {summary.out_dir}` "
                  "renders leaderboard.md")
    return 1 if failed else 0


def cmd_tune(args: argparse.Namespace, console: Console) -> int:
    from benchmark.engine.fitting import FitSettings, check_trainer_settings
    from benchmark.engine.tuning import install_records, run_tuning  # imports Lightning and Optuna: only when tuning

    for module in args.plugin or []:
        load_plugin(module)
    preset = load_preset(args.preset, tuned=False)  # a study starts from the hand-set values
    methods = resolve_methods(args.methods)
    fit = FitSettings(trainer_kwargs=trainer_arguments(args), stacking=args.stacking, loggers=run_loggers(args))
    check_trainer_settings(fit)
    study = check_writable(args.study or Path("runs") / "tune" / preset.name, "--study")
    cache = check_writable(args.cache or Path("runs") / "cache", "--cache")
    args.kept = functools.partial(kept_summary, trials=study, cache=cache)
    tuning = preset.tuning
    console.print(f"bench tune: {preset.name}, {len(methods)} methods, objective {args.objective}, "
                  f"{args.trials or tuning.trials} trials each on seeds {list(tuning.seeds)} x forget classes "
                  f"{[list(c) for c in tuning.forget_classes]} -> {study}")

    def on_trial(name: str, number: int, value: float) -> None:
        if not args.quiet:
            console.print(f"  {name} trial {number}: " + ("pruned" if value != value else f"{value:.4f}"))

    records = run_tuning(preset, methods, trials=args.trials, objective=args.objective, study_dir=study,
                         cache=cache, fit=fit, data_root=args.data_root, command=args.command_line,
                         on_trial=on_trial)
    for name, record in records.items():
        console.print(f"{name}: best {record['best_value']:.4f} (published {record['published_value']}) "
                      f"after {record['trials']} trials: {record['hparams']}")
    untuned = [m for m in methods if m not in records]
    if untuned:
        console.print(f"nothing to tune (empty search space): {', '.join(untuned)}")
    target = install_records(preset, args.preset, study) if args.write else None
    console.print(f"records in {study / 'tuned.yaml'}" + (f", installed in {target}" if target else
                                                            "; --write installs them in the preset"))
    return 0


def cmd_rescore(args: argparse.Namespace, console: Console) -> int:
    from benchmark.engine.rescore import default_out, rescore_runs  # imports Lightning: only when rescoring

    for module in args.plugin or []:
        load_plugin(module)
    out = check_writable(default_out([Path(d) for d in args.dirs], args.out), "--out", keep=False)  # DIR checks follow
    args.kept = functools.partial(kept_summary, rows=out)
    summary = rescore_runs(args.dirs, out=args.out, cache=args.cache, options=attack_options(args),
                           command=args.command_line, data_root=args.data_root)
    console.print(f"{len(summary.rows)} rows rescored, {summary.skipped} rows skipped (already in {summary.out_dir}), "
                  f"{summary.trained_models} models trained -> {Path(summary.out_dir) / RESULTS_FILE}")
    return 0


def cmd_score(args: argparse.Namespace, console: Console) -> int:
    import json

    from benchmark.engine.callbacks import declared_metrics  # imports Lightning: only when scoring
    from benchmark.engine.score import score_outputs
    from benchmark.engine.score_files import load_outputs
    from benchmark.report.scorecard import scorecard

    for module in args.plugin or []:
        load_plugin(module)
    inputs = load_outputs(args.dir)
    scores = score_outputs(inputs, options=attack_options(args))
    if args.json:
        print(json.dumps(scores.to_dict()), flush=True)
        return 0
    title = (f"{args.dir}: forget classes {list(inputs.forget_classes)}, {len(inputs.references)} references, "
             f"{len(inputs.shadows)} in-shadows, {len(inputs.retrained)} null models")
    notes = ["oracle: what a retrained model scores (MIA-NN: the null mean over the null models); gaps as the "
             "leaderboard's", *(f"not computed: {e}" for e in scores.diagnostics.get("errors", []))]
    console.print(scorecard(scores.metrics, scores.oracle, scores.gaps(), declared_metrics(), title=title, notes=notes))
    return 0


def row_line(row: dict) -> Text:
    """One line per finished cell for ``--verbose``: the row's leaderboard scores."""
    from benchmark.engine.callbacks import declared_metrics  # at call time: includes a plugin's attacks

    m = row["metrics"]
    scores = "  ".join(f"{info.label} {m[info.key]:.{2 if info.unit == 'fraction' else 1}f}"
                       for info in declared_metrics() if info.column and info.key in m)
    style = {"ok": "green", "diverged": "yellow", "failed": "red"}[row["status"]]
    return (Text(f"{row['method']} forget {row['forget_classes']} seed {row['seed']}: ", style="bold")
            + Text(row["status"], style=style) + Text(f"  {scores}  ({row['diagnostics'].get('cell_s', 0):.1f} s)"))


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    for module in args.plugin or []:
        load_plugin(module)
    console.print("[bold]methods[/]: " + ", ".join(method_names()))
    console.print("[bold]presets[/]: " + ", ".join(
        f"{name}{' (default)' if name == DEFAULT_PRESET else ''}" for name in preset_names()))
    console.print("[bold]datasets[/]: " + ", ".join(DATAMODULES))
    from benchmark.engine.models import MODELS

    console.print("[bold]models[/]: " + ", ".join(MODELS))
    return 0


def cmd_leaderboard(args: argparse.Namespace, console: Console) -> int:
    from benchmark.engine.callbacks import declared_metrics
    from benchmark.report.leaderboard import render_csv, render_json

    run_dirs = [Path(d) for d in (args.runs or sorted(p.parent for p in Path("runs").glob(f"*/{RESULTS_FILE}")))]
    missing = [str(d) for d in run_dirs if not (d / RESULTS_FILE).exists()]
    if missing:
        raise ConfigError(f"no {RESULTS_FILE} in {', '.join(missing)}: give run directories written by bench run")
    rows = [row for d in run_dirs for row in read_rows(d / RESULTS_FILE)]
    if not rows:
        where = ", ".join(map(str, run_dirs)) if run_dirs else "runs/*/"
        raise ConfigError(f"no result rows in {where}: run `bench run` first, or pass --runs DIR")
    output = Path(args.output)
    command = "bench leaderboard --runs " + " ".join(shlex.quote(str(d)) for d in run_dirs)
    if args.output != LEADERBOARD_FILE:
        command += f" --output {shlex.quote(args.output)}"
    figures = [] if args.no_figures else figure_links()
    metrics = declared_metrics()  # the registered callbacks' scores: a new attack gets its column
    texts = {output: render_markdown(rows, metrics, command=command, figures=figures),
             output.with_suffix(".csv"): render_csv(rows, metrics),
             output.with_suffix(".json"): render_json(rows, metrics)}
    if args.check:  # the text files; the PNGs depend on the matplotlib version, so they are not compared
        stale = [str(path) for path, text in texts.items() if not path.exists() or path.read_text() != text]
        if stale:
            console.print(f"[red]{', '.join(stale)} differ from a fresh render of {len(rows)} rows[/]")
            return 1
        console.print(f"{', '.join(str(p) for p in texts)} are up to date ({len(rows)} rows)")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    for path, text in texts.items():
        path.write_text(text)
    if figures:
        from benchmark.report.plots import draw_all  # matplotlib: only when drawing

        draw_all(rows, output.parent, metrics)
    for table in rich_tables(rows, metrics):
        console.print(table)
    written = ", ".join(str(p) for p in texts) + (f" and {len(figures)} PNG figures" if figures else "")
    console.print(f"{len(rows)} rows from {len(run_dirs)} run directories -> {written}")
    return 0


def figure_links() -> list[tuple[str, str]]:
    from benchmark.report.plots import FIGURES

    return [(title, name) for name, title in FIGURES.items()]


def cmd_perf(args: argparse.Namespace, console: Console) -> int:
    import json

    import torch

    from benchmark.studies.perf import run_perf  # trains models: imports Lightning only when asked

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    resolve_methods(args.methods)  # unknown names fail before anything is measured
    console.print(f"bench perf: preset {args.preset}, {torch.get_num_threads()} torch threads, "
                  f"{'quick plan' if args.quick else 'full plan'}; figure d runs --methods {args.methods}")

    def report(name: str, values: dict) -> None:
        console.print(f"[bold]{name}[/] " + ", ".join(f"{k}={_short(v)}" for k, v in values.items()))

    figures = run_perf(args.preset, methods=args.methods, quick=args.quick, report=report,
                       **({"only": args.only} if args.only else {}))
    if args.json:
        print(json.dumps(figures), flush=True)  # the last line: one object with a key per figure
    return 0


def _figure_list(text: str) -> tuple[str, ...]:
    from benchmark.studies.perf import FIGURE_NAMES  # imports torch: only when --only is given

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in FIGURE_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown figure {', '.join(unknown) or '(none)'}; "
                                         f"known: {', '.join(FIGURE_NAMES)}")
    return names


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def add_attack_arguments(parser: argparse.ArgumentParser) -> None:
    """The attack settings' flags (``bench run``, ``bench rescore``); :func:`attack_options` reads them.
    Every default is AttackOptions' own (docs/protocol.md says where each comes from)."""
    d = AttackOptions()
    parser.add_argument("--neighbours", type=int, default=d.neighbours,
                        help=f"k, MIA-NN's neighbour classes (default {d.neighbours})")
    parser.add_argument("--nn-feature", default=d.nn_feature, choices=FEATURE_KINDS,
                        help=f"MIA-NN feature (default {d.nn_feature})")
    parser.add_argument("--svc-c", type=float, default=d.svc_c, help=f"C of MIA-NN's RBF SVC (default {d.svc_c:g})")
    parser.add_argument("--svc-gamma", type=parse_gamma, default=d.svc_gamma,
                        help=f"gamma of MIA-NN's RBF SVC: scale, auto or a number (default {d.svc_gamma})")
    parser.add_argument("--mia-signal", default=d.mia_signal, choices=MIA_SIGNALS,
                        help=f"MIA-efficacy signal (default {d.mia_signal})")
    parser.add_argument("--per-example-variance", action="store_true",
                        help="U-LiRA: a variance per example instead of one pooled variance")


def parse_gamma(text: str) -> str | float:
    """``scale`` and ``auto`` as they are, anything else as a number (AttackOptions checks its range)."""
    if text in ("scale", "auto"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected scale, auto or a number, got {text!r}") from None


def attack_options(args: argparse.Namespace) -> AttackOptions:
    """The attack settings of :func:`add_attack_arguments`' flags."""
    return AttackOptions(neighbours=args.neighbours, nn_feature=args.nn_feature, mia_signal=args.mia_signal,
                         per_example_variance=args.per_example_variance, svc_c=args.svc_c, svc_gamma=args.svc_gamma)


def add_trainer_arguments(parser: argparse.ArgumentParser) -> None:
    """The Lightning Trainer options of every fit (``bench run``, ``bench tune``), read by :func:`trainer_arguments`."""
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator: cpu, gpu, auto, ... (default cpu)")
    parser.add_argument("--devices", default="1", help="devices per node: a count, ids '0,1', or auto (default 1)")
    parser.add_argument("--strategy", help="Lightning strategy, e.g. ddp for several devices (default: Lightning's)")
    parser.add_argument("--num-nodes", type=int, help="machines of a multi-node run (default 1)")
    parser.add_argument("--precision", help="Lightning precision, e.g. 16-mixed, bf16-mixed (default 32-true)")
    parser.add_argument("--trainer", action="append", metavar="KEY=VALUE",
                        help="any further Lightning Trainer argument for every fit, e.g. sync_batchnorm=true "
                             "(repeatable)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch intra-op threads (default: torch's; 1 is fastest for the small offline models "
                             "when other jobs share the cores)")
    parser.add_argument("--stacking", choices=("grouped", "vmap", "auto"), default="grouped",
                        help="how bank models train together: grouped (exact, the default), vmap (one vectorised "
                             "stack, equal to separate fits only to rounding) or auto (the faster, timed once per "
                             "model and device and remembered in the cache)")
    from benchmark.engine.loggers import LOGGERS  # names only; the loggers' packages load when one is asked for

    parser.add_argument("--logger", action="append", choices=LOGGERS, metavar="NAME",
                        help=f"log every fit's per-epoch loss and every row's metrics with a Lightning logger: "
                             f"{', '.join(LOGGERS)} (repeatable; files under logs/ in the run or study directory, "
                             "W&B offline; README: Logging)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Class-unlearning benchmark suite.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the benchmark grid and append result rows")
    run.add_argument("--preset", default=DEFAULT_PRESET, help=f"preset name or YAML path (default {DEFAULT_PRESET})")
    run.add_argument("--methods", default="all", help="'all' or comma-separated method names (default all)")
    run.add_argument("--forget-classes", nargs="+", metavar="C[,C...]",
                     help="forget-class sets, one per cell: '3 8' = two cells, '3,5' = one cell (default: preset's)")
    run.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")
    run.add_argument("--out", help="run directory (default runs/<preset>)")
    run.add_argument("--cache", help="model cache directory (default runs/cache)")
    run.add_argument("--data-root", help="dataset directory for downloading presets")
    run.add_argument("--plugin", action="append", metavar="MODULE",
                     help="import MODULE first so its UnlearningMethod subclasses register (repeatable)")
    run.add_argument("--untuned", action="store_true",
                     help="the preset's hand-set hyperparameters, without its tuned ones (benchmark/presets/tuned/)")
    run.add_argument("--references", type=int, help="M, reference models retrained on D_r (default: preset's)")
    run.add_argument("--shadows", type=int, help="S, in-shadows trained on D (default: preset's)")
    add_attack_arguments(run)
    add_trainer_arguments(run)
    run.add_argument("--shard", metavar="I/N",
                     help="run only shard I (0-based) of N disjoint parts of the grid, e.g. $SLURM_ARRAY_TASK_ID/8")
    loudness = run.add_mutually_exclusive_group()
    loudness.add_argument("--quiet", action="store_true", help="no progress bars")
    loudness.add_argument("--verbose", action="store_true",
                          help="a line per finished cell, and Lightning's own messages")
    run.set_defaults(func=cmd_run)

    tune = sub.add_parser("tune", help="tune every method the same way on the preset's tuning cells (Optuna)")
    tune.add_argument("--preset", default=DEFAULT_PRESET, help=f"preset name or YAML path (default {DEFAULT_PRESET})")
    tune.add_argument("--methods", default="all", help="'all' or comma-separated method names (default all)")
    tune.add_argument("--trials", type=int,
                      help="trials per method, the same for all (default: the preset's tuning.trials)")
    tune.add_argument("--objective", default="privacy", choices=("privacy", "utility"),
                      help="privacy: forgetting, utility and two attack-free privacy terms on V; utility: the first "
                           "two alone (docs/protocol.md 8; default privacy)")
    tune.add_argument("--study", help="study directory: SQLite study and tuned.yaml; the same command resumes it "
                                      "(default runs/tune/<preset>)")
    tune.add_argument("--cache", help="model cache directory (default runs/cache)")
    tune.add_argument("--data-root", help="dataset directory for downloading presets")
    tune.add_argument("--plugin", action="append", metavar="MODULE",
                      help="import MODULE first so its UnlearningMethod subclasses register (repeatable)")
    tune.add_argument("--write", action="store_true",
                      help="also write the records into the preset's tuned file "
                           "(benchmark/presets/tuned/<preset>.yaml)")
    add_trainer_arguments(tune)
    tune.add_argument("--quiet", action="store_true", help="no line per trial")
    tune.set_defaults(func=cmd_tune)

    rescore = sub.add_parser("rescore", help="score finished rows again with other attack settings, from cached "
                             "outputs only (trains nothing)")
    rescore.add_argument("dirs", nargs="+", metavar="DIR", help="run directories of `bench run`")
    rescore.add_argument("--out", help="where the new rows go (default DIR-rescored; required with several DIRs)")
    rescore.add_argument("--cache", help="the model cache the runs used, only read (default runs/cache)")
    rescore.add_argument("--data-root", help="dataset directory for downloading presets")
    rescore.add_argument("--plugin", action="append", metavar="MODULE",
                         help="import MODULE first, for rows of its methods (repeatable)")
    add_attack_arguments(rescore)
    rescore.set_defaults(func=cmd_rescore)

    score = sub.add_parser("score", help="every score of your own unlearning run, from a directory of its models' "
                           "outputs (README: Score your own unlearning run)")
    score.add_argument("dir", metavar="DIR", help="a directory written by benchmark.engine.score_files.save_outputs")
    score.add_argument("--json", action="store_true", help="print the scores as one JSON object instead of a table")
    score.add_argument("--plugin", action="append", metavar="MODULE",
                       help="import MODULE first, for the attacks it registers (repeatable)")
    add_attack_arguments(score)
    score.set_defaults(func=cmd_score)

    lst = sub.add_parser("list", help="list methods, presets, datasets and models")
    lst.add_argument("--plugin", action="append", metavar="MODULE", help="import MODULE first (repeatable)")
    lst.set_defaults(func=cmd_list)

    board = sub.add_parser("leaderboard", help="render leaderboard.md from result rows")
    board.add_argument("--runs", nargs="+", help="run directories (default: every runs/*/ with results)")
    board.add_argument("--output", default=LEADERBOARD_FILE,
                       help=f"markdown file to write; .csv, .json and PNGs go beside it (default {LEADERBOARD_FILE})")
    board.add_argument("--no-figures", action="store_true", help="skip the PNG figures (and their links)")
    board.add_argument("--check", action="store_true",
                       help="fail if the markdown, CSV or JSON file differs from a fresh render (writes nothing)")
    board.set_defaults(func=cmd_leaderboard)

    perf = sub.add_parser("perf", help="measure the benchmark's cost, side by side (README: Performance)")
    perf.add_argument("--preset", default=DEFAULT_PRESET, help=f"preset to measure (default {DEFAULT_PRESET})")
    perf.add_argument("--methods", default="all",
                      help="methods of figure d's grid run (default all; a list makes it quicker)")
    perf.add_argument("--quick", action="store_true", help="a small plan (few models and epochs) for smoke tests")
    perf.add_argument("--json", action="store_true", help="also print one JSON object with every figure, last")
    perf.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    perf.add_argument("--only", type=_figure_list, metavar="a,b,...",
                      help="measure only these figures (default: all; g, the whole grids, takes an hour and more)")
    perf.set_defaults(func=cmd_perf)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["bench", *argv])
    # wide tables when piped to a file or CI log; the terminal's own width otherwise
    console = Console() if sys.stdout.isatty() else Console(width=200)
    with signals_interrupt() as received:
        try:
            return args.func(args, console)
        except USER_ERRORS as exc:
            Console(stderr=True, soft_wrap=True).print(Text("error: ", style="bold red") + Text(str(exc)),
                                                       highlight=False)  # soft_wrap: one line, whatever the width
            return 2
        except SystemExit:
            if received.signal is None:  # an exit of its own, not Lightning's after an interrupted fit
                raise
        except KeyboardInterrupt:
            pass
    report_interruption(args, received)  # with the usual handlers back: a second Ctrl-C stops the report
    return received.exit_status()


def report_interruption(args: argparse.Namespace, received: Received) -> None:
    """One line on stderr (on rank 0 only): which signal, what the disk keeps, that the command resumes."""
    from benchmark.core.distributed import is_writer

    if not is_writer():
        return
    name = (received.signal or signal.SIGINT).name
    kept = getattr(args, "kept", None)
    if kept is None:  # set by the command once its directories are checked, just before its work starts
        line = f"interrupted ({name}) before any work started"
    else:
        line = f"interrupted ({name}): {kept()}; the same command resumes"
    Console(stderr=True, soft_wrap=True).print(line, highlight=False)


def kept_summary(*, rows: Path | None = None, trials: Path | None = None, cache: Path | None = None) -> str:
    """What an interrupted command leaves for the next one, counted on disk:
    ``12 rows kept in runs/digits, 40 trained models kept in runs/cache``."""
    def counted(n: int, noun: str) -> str:
        return f"{n} {noun}{'' if n == 1 else 's'}"

    parts = []
    if rows is not None:
        parts.append(f"{counted(count_rows(rows), 'row')} kept in {rows}")
    if trials is not None:
        parts.append(f"{counted(count_trials(trials), 'finished trial')} kept in {trials}")
    if cache is not None:
        parts.append(f"{counted(count_models(cache), 'trained model')} kept in {cache}")
    return ", ".join(parts)


def count_rows(run_dir: Path) -> int:
    """Rows of ``run_dir``'s results file (appended whole; a torn line of a killed writer is not counted)."""
    import warnings

    path = run_dir / RESULTS_FILE
    if not path.exists():
        return 0
    with warnings.catch_warnings():  # read_rows warns about torn lines; here only the count matters
        warnings.simplefilter("ignore")
        return len(read_rows(path))


def count_models(cache: Path) -> int:
    """Finished model entries of a model cache: each has its metadata file, written once its weights are."""
    return sum(1 for _ in (cache / "models").rglob("*.json"))


def count_trials(study: Path) -> int:
    """Finished (complete or pruned) trials of every Optuna study in ``study/study.db``."""
    db = study / "study.db"
    if not db.exists():
        return 0
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{db.resolve()}")
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return sum(len(optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(states=finished))
               for summary in optuna.get_all_study_summaries(storage))


if __name__ == "__main__":
    sys.exit(main())
