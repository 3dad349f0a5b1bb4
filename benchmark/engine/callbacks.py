"""The attack and metric callbacks every cell runs, registered by name.

Adding an attack is one file in ``attacks/`` (a ``MetricCallback`` that declares its metrics) plus one
``register_callback`` line here, or in a plugin module.
"""

from __future__ import annotations

from attacks import (
    MIANN,
    RMIA,
    Accuracy,
    CellContext,
    ForgetDestination,
    MetricCallback,
    MetricInfo,
    MIAEfficacy,
    SimilarityFidelity,
    TVDistance,
    ULiRA,
)
from attacks.relearning import RelearningProbe
from attacks.representation import RepresentationProbe
from benchmark.core.registry import Registry

# written by the engine around the fit (benchmark.engine.cell.run_cell), not by a callback
CELL_METRICS = (
    MetricInfo("time_s", "time (s)", "s", "low", "seconds of the unlearning step alone", column=True),
    MetricInfo("time_ratio", "time / oracle", "ratio", "low", "unlearning time over the oracle's training time"),
)


def _check_callback(cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, MetricCallback)):
        raise TypeError(f"{cls!r} is not a subclass of attacks.MetricCallback and cannot be registered")
    metrics = getattr(cls, "metrics", None)
    if not (isinstance(metrics, tuple) and all(isinstance(m, MetricInfo) for m in metrics)):
        raise TypeError(f"{cls.__qualname__} must declare the scores it writes: metrics = (MetricInfo(...), ...), "
                        "or () for a callback that writes diagnostics only")


CALLBACKS: Registry[type[MetricCallback]] = Registry("attack", check=_check_callback)


def _unique(sources: list[tuple[str, tuple[MetricInfo, ...]]]) -> list[MetricInfo]:
    """The metrics of (owner, metrics) pairs in order; a key two owners write is an error naming both."""
    owners: dict[str, str] = {}
    for owner, metrics in sources:
        for m in metrics:
            if m.key in owners:
                raise ValueError(f"metric {m.key!r} is declared twice: by {owners[m.key]} and by {owner}")
            owners[m.key] = owner
    return [m for _, metrics in sources for m in metrics]


def register_callback(name: str, cls: type[MetricCallback]) -> type[MetricCallback]:
    """Run ``cls`` in every cell from now on (after the callbacks registered before it)."""
    _check_callback(cls)
    others = [(n, c.metrics) for n, c in CALLBACKS.items() if n != name]
    _unique([*others, (name, cls.metrics), ("the engine", CELL_METRICS)])  # fails now, not at the first leaderboard
    return CALLBACKS.register(name, cls)


def declared_metrics() -> list[MetricInfo]:
    """Every score a row can hold: each registered callback's, in registration order, then the engine's."""
    return _unique([*((n, c.metrics) for n, c in CALLBACKS.items()), ("the engine", CELL_METRICS)])


for _name, _cls in (("accuracy", Accuracy), ("mia_efficacy", MIAEfficacy), ("tv", TVDistance), ("mia_nn", MIANN),
                    ("ulira", ULiRA), ("similarity_fidelity", SimilarityFidelity),
                    ("forget_destination", ForgetDestination)):
    register_callback(_name, _cls)
register_callback("rmia", RMIA)
register_callback("relearning", RelearningProbe)  # runs models: attacks/probes.py
register_callback("representation", RepresentationProbe)


def attack_callbacks(context: CellContext) -> list[MetricCallback]:
    """One instance of every registered callback, all writing into ``context``."""
    return [cls(context) for cls in CALLBACKS.values()]
