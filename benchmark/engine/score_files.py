"""A directory of model outputs that ``bench score DIR`` reads: one JSON manifest and one tensor file per model.

    DIR/manifest.json            {"format": "unlearning-bench-outputs", "version": 1, "forget_classes": [3],
                                  "num_classes": 10, "seed": 0,
                                  "models": {"target": "target.safetensors", "oracle": "oracle.safetensors",
                                             "references": ["references-0.safetensors", ...],
                                             "shadows": [...], "retrained": [...]}}
    DIR/target.safetensors       tensors "D_f/logits", "D_f/labels", "D_r/logits", ... (one pair per split)

Model files are safetensors (when the package is importable) or numpy ``.npz`` with the same entry names,
chosen by their suffix; paths are relative to DIR. Neither format can hold code: ``.npz`` files are read with
``allow_pickle=False``. The roles, and the splits each needs, are :mod:`benchmark.engine.score`'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from attacks.outputs import Outputs
from benchmark.engine.score import MANY_ROLES, ROLE_MEANING, ROLES, SINGLE_ROLES, ScoreInputError, ScoreInputs
from datamodules.base import EVAL_SPLITS

MANIFEST = "manifest.json"
FORMAT, VERSION = "unlearning-bench-outputs", 1
KINDS = ("logits", "labels")
SUFFIXES = {"safetensors": ".safetensors", "npz": ".npz"}
MANIFEST_KEYS = ("format", "version", "forget_classes", "num_classes", "seed", "models")


def _safetensors() -> Any | None:
    try:
        import safetensors.torch
    except ImportError:
        return None
    return safetensors.torch


def default_format() -> str:
    """``safetensors`` where the package is installed, ``npz`` otherwise."""
    return "safetensors" if _safetensors() is not None else "npz"


def save_outputs(directory: str | Path, inputs: ScoreInputs, *, file_format: str | None = None) -> Path:
    """Write ``inputs`` as a directory ``bench score`` reads; return the manifest's path.

    The inputs are checked first (:meth:`ScoreInputs.checked`), so a written directory can always be scored.
    The manifest is written last: a directory whose writing broke off has none and is refused.

    Args:
        directory: where to write (created if missing; files of the same names are replaced).
        inputs: the outputs of every role.
        file_format: ``safetensors`` or ``npz`` (default: :func:`default_format`).

    Raises:
        ScoreInputError: the inputs cannot be scored, or the format is unknown or not installed.
    """
    file_format = file_format or default_format()
    if file_format not in SUFFIXES:
        raise ScoreInputError(f"unknown outputs file format {file_format!r}; choose one of {', '.join(SUFFIXES)}")
    if file_format == "safetensors" and _safetensors() is None:
        raise ScoreInputError("file_format 'safetensors' needs the safetensors package (pip install safetensors); "
                              "or write 'npz'")
    inputs = inputs.checked()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = SUFFIXES[file_format]

    def write(name: str, outputs: Outputs) -> str:
        _write_tensors(directory / f"{name}{suffix}", _entries(outputs))
        return f"{name}{suffix}"

    models: dict[str, Any] = {role: write(role, getattr(inputs, role)) for role in SINGLE_ROLES}
    models |= {role: [write(f"{role}-{i}", o) for i, o in enumerate(getattr(inputs, role))] for role in MANY_ROLES}
    manifest = {"format": FORMAT, "version": VERSION, "forget_classes": list(inputs.forget_classes),
                "num_classes": inputs.num_classes, "seed": inputs.seed, "models": models}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return directory / MANIFEST


def load_outputs(directory: str | Path) -> ScoreInputs:
    """The outputs a directory written by :func:`save_outputs` (or by hand, in its format) holds, checked.

    Raises:
        ScoreInputError: no or a malformed manifest, an unknown or missing role, a missing or unreadable file,
            an unknown entry in a file, or outputs that cannot be scored; the message names which.
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    models = manifest["models"]
    found: dict[str, Any] = {}
    for role in SINGLE_ROLES:
        found[role] = _read_model(directory, models[role], role)
    for role in MANY_ROLES:
        found[role] = [_read_model(directory, path, f"{role}[{i}]") for i, path in enumerate(models[role])]
    inputs = ScoreInputs(**found, forget_classes=manifest["forget_classes"], seed=manifest.get("seed", 0)).checked()
    if "num_classes" in manifest and manifest["num_classes"] != inputs.num_classes:
        raise ScoreInputError(f"{directory / MANIFEST} says num_classes {manifest['num_classes']}, but the logits "
                              f"have {inputs.num_classes} classes")
    return inputs


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise ScoreInputError(f"no {MANIFEST} in {directory}: write the directory with "
                              "benchmark.engine.score_files.save_outputs (README: Score your own unlearning run)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScoreInputError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ScoreInputError(f"{path} must hold a JSON object")
    unknown = sorted(manifest.keys() - set(MANIFEST_KEYS))
    if unknown:
        raise ScoreInputError(f"{path}: unknown key {', '.join(map(repr, unknown))}; the keys are "
                              f"{', '.join(MANIFEST_KEYS)}")
    if manifest.get("format", FORMAT) != FORMAT or manifest.get("version", VERSION) != VERSION:
        raise ScoreInputError(f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}; "
                              f"this version reads {FORMAT!r} version {VERSION}")
    for key in ("forget_classes", "models"):
        if key not in manifest:
            raise ScoreInputError(f"{path} has no {key!r}")
    forget = manifest["forget_classes"]
    if not isinstance(forget, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in forget):
        raise ScoreInputError(f"{path}: forget_classes must be a list of class ids, got {forget!r}")
    models = manifest["models"]
    if not isinstance(models, dict):
        raise ScoreInputError(f"{path}: models must be an object of role -> file(s)")
    unknown = sorted(models.keys() - set(ROLES))
    if unknown:
        raise ScoreInputError(f"{path}: unknown role {', '.join(map(repr, unknown))}; the roles are {', '.join(ROLES)}")
    for role in ROLES:
        value = models.get(role)
        if value is None:
            raise ScoreInputError(f"{path} lists no {role!r}: scoring needs {ROLE_MEANING[role]}")
        expected = isinstance(value, str) if role in SINGLE_ROLES else (
            isinstance(value, list) and all(isinstance(v, str) for v in value))
        if not expected:
            raise ScoreInputError(f"{path}: {role!r} must be " + ("a file name" if role in SINGLE_ROLES else
                                                                  "a list of file names") + f", got {value!r}")
    return manifest


def _read_model(directory: Path, name: str, what: str) -> Outputs:
    """One model's file as :class:`Outputs` (labels as int64, logits as stored)."""
    path = directory / name
    if not path.is_file():
        raise ScoreInputError(f"{path} ({what}) does not exist")
    entries = _read_tensors(path, what)
    logits: dict[str, Tensor] = {}
    labels: dict[str, Tensor] = {}
    for key, tensor in entries.items():
        split, _, kind = key.partition("/")
        if split not in EVAL_SPLITS or kind not in KINDS:
            raise ScoreInputError(f"{path} ({what}): unknown entry {key!r}; entries are <split>/logits and "
                                  f"<split>/labels with split one of {', '.join(EVAL_SPLITS)}")
        (logits if kind == "logits" else labels)[split] = tensor
    return Outputs(logits=logits, labels=labels)


def _entries(outputs: Outputs) -> dict[str, Tensor]:
    tensors = {f"{split}/logits": t for split, t in outputs.logits.items()}
    tensors |= {f"{split}/labels": t for split, t in outputs.labels.items()}
    # own, contiguous CPU memory: safetensors refuses views and shared storage
    return {key: t.detach().cpu().contiguous().clone() for key, t in tensors.items()}


def _write_tensors(path: Path, tensors: Mapping[str, Tensor]) -> None:
    if path.suffix == SUFFIXES["safetensors"]:
        _safetensors().save_file(dict(tensors), str(path))
    else:
        with path.open("wb") as f:  # a file object: np.savez would otherwise append a second .npz
            np.savez(f, **{key: t.numpy() for key, t in tensors.items()})


def _read_tensors(path: Path, what: str) -> dict[str, Tensor]:
    if path.suffix not in SUFFIXES.values():
        raise ScoreInputError(f"{path} ({what}): unknown file type; model files end in "
                              f"{' or '.join(SUFFIXES.values())}")
    try:
        if path.suffix == SUFFIXES["npz"]:
            with np.load(path, allow_pickle=False) as arrays:
                return {key: torch.from_numpy(arrays[key].copy()) for key in arrays.files}
        reader = _safetensors()
        if reader is None:
            raise ScoreInputError(f"{path} ({what}) is a safetensors file: pip install safetensors, or save .npz")
        return reader.load_file(str(path))
    except ScoreInputError:
        raise
    except Exception as exc:  # a truncated or foreign file: numpy, zipfile and safetensors each raise their own
        raise ScoreInputError(f"{path} ({what}) cannot be read: {type(exc).__name__}: {exc}") from None
