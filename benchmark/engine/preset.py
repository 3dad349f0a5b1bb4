"""Presets: one YAML file per benchmark configuration, shipped in ``benchmark/presets/``.

A preset fixes the dataset, the model, the training recipe of every model the protocol trains, the
forget classes and seeds of the grid, the bank sizes and the per-method hyperparameters. Every
default of the suite lives in a preset file or in a method's constructor, nowhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from benchmark.core.errors import ConfigError, UnknownNameError
from benchmark.core.recipes import TrainRecipe
from benchmark.core.registry import unknown_name_message

DEFAULT_PRESET = "digits"


class PresetError(ConfigError):
    """A preset file is malformed; the message names the file, the key and its line."""


@dataclass(frozen=True)
class Bank:
    """How many reference models (retrained on D_r) and in-shadows (trained on D) the attacks use."""

    references: int = 8
    shadows: int = 8


@dataclass(frozen=True)
class Tuning:
    """Where ``bench tune`` tunes (docs/protocol.md, section 8): its own seeds, never the leaderboard's, and
    a declared set of forget classes; how many trials each method gets by default."""

    seeds: tuple[int, ...] = (100, 101)
    forget_classes: tuple[tuple[int, ...], ...] = ((0,), (3,), (6,), (9,))
    trials: int = 20


@dataclass(frozen=True)
class Preset:
    name: str
    dataset: str
    model: str
    train: TrainRecipe
    forget_classes: tuple[tuple[int, ...], ...]
    seeds: tuple[int, ...]
    description: str = ""
    root: str | None = None
    download: bool = False
    augment: bool = False
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    unlearn_batch_size: int = 64
    bank: Bank = field(default_factory=Bank)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    tuning: Tuning = field(default_factory=Tuning)
    # method -> its tuning record (benchmark/presets/tuned/<name>.yaml, written by `bench tune --write`)
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)

    def method_hparams(self, method: str) -> dict[str, Any]:
        """The preset's hyperparameters for ``method``: its tuned values over the preset's own (the method's
        constructor defaults fill the rest)."""
        return dict(self.methods.get(method, {})) | dict(self.tuned.get(method, {}).get("hparams", {}))

    def tuning_of(self, method: str) -> dict[str, Any] | None:
        """What produced ``method``'s tuned values (recorded in its rows), or None if it is not tuned."""
        record = self.tuned.get(method)
        return None if record is None else {k: v for k, v in record.items() if k not in ("trials_log", "space")}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def preset_names() -> list[str]:
    folder = resources.files("benchmark") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def tuned_path(name_or_path: str) -> Path:
    """Where a preset's tuning records live: ``tuned/<name>.yaml`` beside the preset file."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"}:
        return path.parent / "tuned" / path.name
    return Path(str(resources.files("benchmark") / "presets" / "tuned" / f"{name_or_path}.yaml"))


def load_preset(name_or_path: str, *, tuned: bool = True) -> Preset:
    """Load a packaged preset by name, or any preset file by path, with its tuning records.

    Args:
        name_or_path: ``digits``, ``mnist5k``, ... (see :func:`preset_names`) or a path to a YAML file.
        tuned: apply the tuned hyperparameters of ``tuned/<name>.yaml`` where it exists (False: the preset's
            hand-set values alone, e.g. for tuning itself).
    """
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} and path.exists():
        preset = parse_preset(path.read_text(), source=str(path), name=path.stem)
    elif name_or_path not in preset_names():
        raise UnknownNameError(unknown_name_message("preset", name_or_path, preset_names()))
    else:
        text = (resources.files("benchmark") / "presets" / f"{name_or_path}.yaml").read_text()
        preset = parse_preset(text, source=f"{name_or_path}.yaml", name=name_or_path)
    records = tuned_path(name_or_path)
    if tuned and records.exists():
        preset = dataclasses.replace(preset, tuned=_tuned_records(records))
    return preset


def _tuned_records(path: Path) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(path.read_text()) or {}
    records = data.get("methods") if isinstance(data, dict) else None
    if not isinstance(records, dict) or not all(isinstance(r, dict) and "hparams" in r for r in records.values()):
        raise PresetError(f"{path}: expected `methods: {{name: {{hparams: ..., ...}}}}` (written by bench tune)")
    return records


_REQUIRED = {"dataset", "model", "train", "forget_classes", "seeds"}
_FIELDS = {f.name for f in dataclasses.fields(Preset)} - {"name", "tuned"}


def parse_preset(text: str, *, source: str, name: str) -> Preset:
    """Parse and validate preset YAML; every error names the source, the key and its line."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PresetError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PresetError(f"{source}: a preset is a mapping of keys to values")
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value} if node is not None else {}

    def fail(key: str, message: str) -> PresetError:
        where = f" (line {lines[key]})" if key in lines else ""
        return PresetError(f"{source}: key {key!r}{where}: {message}")

    for key in data:
        if key not in _FIELDS:
            raise fail(key, unknown_name_message("preset key", str(key), sorted(_FIELDS)))
    for key in sorted(_REQUIRED - data.keys()):
        raise PresetError(f"{source}: missing required key {key!r}")

    kwargs: dict[str, Any] = {k: v for k, v in data.items()
                              if k not in {"train", "bank", "forget_classes", "seeds", "tuning"}}
    try:
        kwargs["train"] = TrainRecipe(**data["train"])
    except (TypeError, ValueError) as exc:
        raise fail("train", str(exc)) from None
    try:
        kwargs["bank"] = Bank(**data.get("bank", {}))
    except TypeError as exc:
        raise fail("bank", str(exc)) from None
    try:
        kwargs["forget_classes"] = tuple(tuple(int(c) for c in _as_list(fc)) for fc in data["forget_classes"])
        kwargs["seeds"] = tuple(int(s) for s in data["seeds"])
    except (TypeError, ValueError) as exc:
        raise fail("forget_classes" if "seeds" not in str(exc) else "seeds",
                   f"expected a list of class lists and a list of integer seeds ({exc})") from None
    try:
        tuning = dict(data.get("tuning") or {})
        if "seeds" in tuning:
            tuning["seeds"] = tuple(int(x) for x in tuning["seeds"])
        if "forget_classes" in tuning:
            tuning["forget_classes"] = tuple(tuple(int(c) for c in _as_list(fc)) for fc in tuning["forget_classes"])
        kwargs["tuning"] = Tuning(**tuning)
    except (TypeError, ValueError) as exc:
        raise fail("tuning", f"expected seeds, forget_classes and trials ({exc})") from None
    if set(kwargs["tuning"].seeds) & set(kwargs["seeds"]):
        raise fail("tuning", f"tuning seeds {sorted(set(kwargs['tuning'].seeds) & set(kwargs['seeds']))} are also "
                   "grid seeds: the leaderboard's cells must stay unseen by tuning")
    if not isinstance(kwargs.get("methods", {}), dict):
        raise fail("methods", "expected a mapping of method name to hyperparameters")
    return Preset(name=name, **kwargs)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]
