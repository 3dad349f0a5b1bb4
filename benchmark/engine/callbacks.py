"""The attack and metric callbacks every cell runs, registered by name.

Adding an attack is one file in ``attacks/`` (a ``MetricCallback`` that declares its metrics) plus one
``register_callback`` line here, or in a plugin module.
"""

from __future__ import annotations

from attacks import (
    MIANN,
    Accuracy,
    CellContext,
    ForgetDestination,
    MetricCallback,
    MIAEfficacy,
    SimilarityFidelity,
    TVDistance,
    ULiRA,
)
from benchmark.core.registry import Registry


def _check_callback(cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, MetricCallback)):
        raise TypeError(f"{cls!r} is not a subclass of attacks.MetricCallback and cannot be registered")


CALLBACKS: Registry[type[MetricCallback]] = Registry("attack", check=_check_callback)


def register_callback(name: str, cls: type[MetricCallback]) -> type[MetricCallback]:
    """Run ``cls`` in every cell from now on (after the callbacks registered before it)."""
    return CALLBACKS.register(name, cls)


for _name, _cls in (("accuracy", Accuracy), ("mia_efficacy", MIAEfficacy), ("tv", TVDistance), ("mia_nn", MIANN),
                    ("ulira", ULiRA), ("similarity_fidelity", SimilarityFidelity),
                    ("forget_destination", ForgetDestination)):
    register_callback(_name, _cls)


def attack_callbacks(context: CellContext) -> list[MetricCallback]:
    """One instance of every registered callback, all writing into ``context``."""
    return [cls(context) for cls in CALLBACKS.values()]
