"""Search spaces: what ``bench tune`` may vary of a method, typed, each with its published value.

A method declares its space on the class::

    class MyMethod(UnlearningMethod):
        name = "my_method"
        search_space = {
            "lr": LogUniform(1e-4, 1e-1, published=1e-2),   # the paper's value, the study's first trial
            "epochs": Integer(1, 10, published=5),
            "alpha": Uniform(0.0, 1.0, published=0.5),
        }

Every key is a constructor argument of the method. The published value (the paper's or the reference code's,
cited in the method's docstring) is the study's first trial, so a tuned value is never worse on the objective
than the published one. Sampling goes through a duck-typed ``trial`` (Optuna's ``suggest_float`` /
``suggest_int`` / ``suggest_categorical``), so this module imports no tuning library.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Param(abc.ABC):
    """One searched hyperparameter."""

    published: Any

    @abc.abstractmethod
    def suggest(self, trial: Any, name: str) -> Any:
        """This parameter's value in ``trial`` (Optuna's ``trial.suggest_*``)."""

    @abc.abstractmethod
    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the space."""

    def describe(self) -> dict[str, Any]:
        """The parameter as recorded in a tuning record (type, bounds, published value)."""
        return {"type": type(self).__name__, **{k: v for k, v in vars(self).items()}}

    def __post_init__(self) -> None:
        if not self.contains(self.published):
            raise ValueError(f"{type(self).__name__}: the published value {self.published!r} lies outside {self}")


@dataclass(frozen=True)
class LogUniform(Param):
    """A positive float sampled uniformly in log space (learning rates, weights spanning decades)."""

    low: float
    high: float
    published: float

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"LogUniform needs 0 < low < high, got {self.low}, {self.high}")
        super().__post_init__()

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high and math.isfinite(value)


@dataclass(frozen=True)
class Uniform(Param):
    """A float sampled uniformly in ``[low, high]``."""

    low: float
    high: float
    published: float

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"Uniform needs low < high, got {self.low}, {self.high}")
        super().__post_init__()

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high)

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high


@dataclass(frozen=True)
class Integer(Param):
    """An integer in ``[low, high]`` (epochs, steps)."""

    low: int
    high: int
    published: int

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"Integer needs low < high, got {self.low}, {self.high}")
        super().__post_init__()

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high)

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high


@dataclass(frozen=True)
class Choice(Param):
    """One of a few values (a layer set, a schedule)."""

    choices: tuple
    published: Any

    def __post_init__(self) -> None:
        if len(self.choices) < 2:
            raise ValueError(f"Choice needs at least two choices, got {self.choices}")
        super().__post_init__()

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def contains(self, value: Any) -> bool:
        return value in self.choices


SearchSpace = Mapping[str, Param]


def published_values(space: SearchSpace) -> dict[str, Any]:
    """The first trial of a study: every searched hyperparameter at its published value."""
    return {name: param.published for name, param in space.items()}


def sample(space: SearchSpace, trial: Any) -> dict[str, Any]:
    """One trial's hyperparameters."""
    return {name: param.suggest(trial, name) for name, param in space.items()}
