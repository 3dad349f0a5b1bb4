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

    def method_hparams(self, method: str) -> dict[str, Any]:
        """The preset's hyperparameters for ``method`` (the method's own defaults fill the rest)."""
        return dict(self.methods.get(method, {}))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def preset_names() -> list[str]:
    folder = resources.files("benchmark") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str) -> Preset:
    """Load a packaged preset by name, or any preset file by path.

    Args:
        name_or_path: ``digits``, ``mnist5k``, ... (see :func:`preset_names`) or a path to a YAML file.
    """
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} and path.exists():
        return parse_preset(path.read_text(), source=str(path), name=path.stem)
    if name_or_path not in preset_names():
        raise UnknownNameError(unknown_name_message("preset", name_or_path, preset_names()))
    text = (resources.files("benchmark") / "presets" / f"{name_or_path}.yaml").read_text()
    return parse_preset(text, source=f"{name_or_path}.yaml", name=name_or_path)


_REQUIRED = {"dataset", "model", "train", "forget_classes", "seeds"}
_FIELDS = {f.name for f in dataclasses.fields(Preset)} - {"name"}


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

    kwargs: dict[str, Any] = {k: v for k, v in data.items() if k not in {"train", "bank", "forget_classes", "seeds"}}
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
    if not isinstance(kwargs.get("methods", {}), dict):
        raise fail("methods", "expected a mapping of method name to hyperparameters")
    return Preset(name=name, **kwargs)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]
