"""Where and how a row was made: software versions, the project's commit, the machine and the fit settings.

:func:`provenance` is recorded in every result row and in its run directory's ``run.json``; it never enters a
row's configuration hash. :func:`weight_settings` is the part of the fit settings that changes trained
weights; :func:`weights_key` puts it into the cache keys of trained models (the bank's and the unlearned
ones), and only where it differs from the single-device default, so that every key of a default run is the
one it was before these settings were keyed.

What is recorded, and how "auto" is resolved without starting a Trainer:

- ``accelerator``: the Trainer's accelerator (``cpu`` unless asked otherwise, as :class:`FitSettings` builds
  it); ``auto`` as Lightning picks it (mps, then cuda, then cpu; TPUs are not looked for), ``gpu`` as mps or cuda.
- ``devices``: the number of devices per node (``auto`` and ``-1``: every device of the accelerator; a list
  or ``"0,1"``: its ids); ``device_names``: the CUDA device names, or the CPU's model name otherwise.
- ``strategy``: as given, ``auto`` where none was (Lightning then runs one device alone and several in DDP);
  ``precision``: Lightning's full name (``16`` as ``16-mixed``, ``32`` as ``32-true``).
- ``host``: a truncated sha256 of the host name, never the name itself (rows get published).
- ``commit``: ``git rev-parse HEAD`` of the project's source tree, None where the package is not a git
  checkout of its own (or git is missing or slow); ``dirty``: whether tracked files differ from that
  commit (None where unknown; untracked files do not count).
- ``keyed``: :func:`weight_settings`, the settings that entered the row's keys (empty for the defaults).
"""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.pytorch.accelerators import AcceleratorRegistry, CUDAAccelerator, MPSAccelerator

import benchmark
from benchmark.engine.fitting import DEFAULT_FIT, FitSettings
from benchmark.engine.grouped import STEP_CHANGING

GIT_TIMEOUT_S = 3.0
HOST_HASH_CHARS = 16
DEFAULT_PRECISION = "32-true"
# Lightning's short precision names, as its Trainer expands them
PRECISION_NAMES = {"16": "16-mixed", "bf16": "bf16-mixed", "32": "32-true", "64": "64-true"}
DEFAULT_STRATEGIES = (None, "auto")


def provenance(fit: FitSettings = DEFAULT_FIT) -> dict[str, Any]:
    """Where and how rows made under ``fit`` come from (see the module's docstring for each field).

    Args:
        fit: the fit settings of the run (its Trainer arguments are read; no Trainer is started).

    Example:
        >>> sorted(provenance())[:4]
        ['accelerator', 'commit', 'cuda', 'cudnn']
    """
    kwargs = fit.trainer_kwargs
    accelerator = resolve_accelerator(kwargs.get("accelerator", "cpu"))
    return environment() | {
        "accelerator": accelerator, "devices": device_count(kwargs.get("devices", 1), accelerator),
        "device_names": device_names(kwargs.get("devices", 1), accelerator),
        "num_nodes": int(kwargs.get("num_nodes", 1)), "strategy": str(kwargs.get("strategy") or "auto"),
        "precision": full_precision(kwargs.get("precision")), "stacking": fit.stacking,
        "keyed": weight_settings(fit),
    }


def environment() -> dict[str, Any]:
    """The software, the project's commit, the host (hashed) and torch's thread count of this process."""
    return _static_environment() | {"threads": torch.get_num_threads()}


@functools.cache
def _static_environment() -> dict[str, Any]:
    # what cannot change while the process runs: looked up (git included) once
    commit, dirty = source_commit()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"version": benchmark.__version__, "commit": commit, "dirty": dirty,
            "python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
            "cuda": torch.version.cuda, "cudnn": cudnn, "host": host_hash()}


def host_hash(name: str | None = None) -> str:
    """A truncated sha256 of the host name (default: this machine's): tells machines apart without naming them."""
    name = platform.node() if name is None else name
    return hashlib.sha256(name.encode()).hexdigest()[:HOST_HASH_CHARS]


def source_commit(source: Path | None = None) -> tuple[str | None, bool | None]:
    """The git commit of the project's source tree and whether its tracked files differ from it.

    Only a checkout whose top level holds the package counts: an installed copy inside some other repository
    (a virtual environment inside a project) is no checkout of this one. Never raises: (None, None) where
    git is missing, slow or says no.

    Args:
        source: the tree's top level (default: the directory above the ``benchmark`` package).
    """
    source = (source or Path(benchmark.__file__).resolve().parent.parent).resolve()
    top = _git(source, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != source:
        return None, None
    commit = _git(source, "rev-parse", "HEAD")
    # --no-optional-locks: a status must not write the index under a concurrent git command
    status = _git(source, "--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    return commit, None if commit is None or status is None else bool(status)


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def weight_settings(fit: FitSettings = DEFAULT_FIT) -> dict[str, Any]:
    """The fit settings that change trained weights, where they differ from one device in 32-bit precision
    with Lightning's default strategy: the device count per node, the node count (N devices split each step
    into N batches), the precision, the strategy, and the Trainer arguments that change Lightning's step
    (gradient clipping, accumulation). Empty for the defaults.

    Shaped as Trainer arguments, so ``weight_settings(FitSettings(trainer_kwargs=s)) == s`` (``bench rescore``
    rebuilds a row's keys from the copy in its provenance).

    Left out, though they move the last bits too: torch's thread count and ``deterministic``. On one machine
    they only reorder float sums (rounding-level), and keying the thread count would split one cache across
    laptops with different core counts; they are in :func:`provenance` instead. The accelerator is left out
    for the same reason (CPU and GPU runs share models unless their device count or precision differ).
    """
    kwargs = fit.trainer_kwargs
    accelerator = resolve_accelerator(kwargs.get("accelerator", "cpu"))
    settings: dict[str, Any] = {}
    devices = device_count(kwargs.get("devices", 1), accelerator)
    if devices != 1:
        settings["devices"] = devices
    if int(kwargs.get("num_nodes", 1)) != 1:
        settings["num_nodes"] = int(kwargs["num_nodes"])
    precision = full_precision(kwargs.get("precision"))
    if precision != DEFAULT_PRECISION:
        settings["precision"] = precision
    if kwargs.get("strategy") not in DEFAULT_STRATEGIES:
        settings["strategy"] = str(kwargs["strategy"])
    for key, plain in STEP_CHANGING.items():
        if key != "precision" and kwargs.get(key) not in plain:
            settings[key] = kwargs[key]
    return settings


def weights_key(fit: FitSettings = DEFAULT_FIT) -> dict[str, Any]:
    """What a trained model's cache key adds for ``fit``: ``{"fit": weight_settings(fit)}``, or nothing for the
    defaults (so keys of default runs are unchanged)."""
    settings = weight_settings(fit)
    return {"fit": settings} if settings else {}


def full_precision(precision: Any) -> str:
    """Lightning's full name of ``precision`` (None: the default ``32-true``)."""
    if precision is None:
        return DEFAULT_PRECISION
    text = str(precision)
    return PRECISION_NAMES.get(text, text)


def resolve_accelerator(accelerator: Any) -> str:
    """The accelerator ``auto`` or ``gpu`` would give on this machine (see the module's docstring); others as given."""
    name = str(accelerator)
    if name not in ("auto", "gpu"):
        return name
    if MPSAccelerator.is_available():
        return "mps"
    if CUDAAccelerator.is_available():
        return "cuda"
    return "cpu" if name == "auto" else name


def device_count(devices: Any, accelerator: str) -> int:
    """How many devices per node ``devices`` asks for (``auto`` and ``-1``: every device of ``accelerator``)."""
    ids = _device_ids(devices)
    if ids is not None:
        return len(ids)
    text = str(devices).strip()
    if text in ("auto", "-1"):
        return _auto_device_count(accelerator)
    return int(text)


def device_names(devices: Any, accelerator: str) -> list[str]:
    """The CUDA devices' names, or the CPU's model name on every other accelerator."""
    if accelerator != "cuda":
        return [_cpu_name()]
    ids = _device_ids(devices)
    ids = range(device_count(devices, accelerator)) if ids is None else ids
    try:
        return [torch.cuda.get_device_name(i) for i in ids]
    except (RuntimeError, AssertionError):  # no such device here: recorded as unknown rather than failing a row
        return []


def _device_ids(devices: Any) -> list[int] | None:
    """Device ids where ``devices`` lists them (``[0, 1]``, ``"0,1"``), None where it is a count or ``auto``."""
    if isinstance(devices, (list, tuple)):
        return [int(i) for i in devices]
    if isinstance(devices, str) and "," in devices:
        return [int(i) for i in devices.split(",") if i.strip()]
    return None


def _auto_device_count(accelerator: str) -> int:
    try:
        return int(AcceleratorRegistry[accelerator]["accelerator"].auto_device_count())
    except (KeyError, RuntimeError):
        return 1


@functools.cache
def _cpu_name() -> str:
    if sys.platform.startswith("linux"):
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
        except OSError:
            pass
    return platform.processor() or platform.machine()
