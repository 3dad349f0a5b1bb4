"""What the metric and attack callbacks share: the cell's context and the fit-end hook."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import lightning as L
from lightning.pytorch.callbacks import Callback
from torch import nn

from attacks.errors import AttackOptionsError, ScoreUndefined
from attacks.functional import FEATURE_KINDS, MIA_SIGNALS
from attacks.metrics import MetricInfo
from attacks.outputs import Outputs, OutputSource
from attacks.probe_data import ProbeData, ProbeStore


@dataclass(frozen=True)
class AttackOptions:
    """Settings of the attacks (docs/protocol.md); every default is the protocol's.

    Args:
        neighbours: k, the number of neighbour classes MIA-NN looks at.
        nn_feature: MIA-NN feature: ``prob``, ``logprob`` or ``renorm``.
        mia_signal: MIA-efficacy signal: ``confidence``, ``entropy`` or ``modified_entropy``.
        per_example_variance: U-LiRA fits a variance per example instead of one pooled variance.
        svc_c: C of MIA-NN's RBF SVC.
        svc_gamma: gamma of MIA-NN's RBF SVC: ``scale``, ``auto`` or a positive number.
    """

    neighbours: int = 3
    # the feature and the SVC: chosen by benchmark/studies/mia_nn_settings.md (the largest separation of the
    # original from the null among settings whose null mean stays within 1 point of 50)
    nn_feature: str = "logprob"
    mia_signal: str = "confidence"
    per_example_variance: bool = False
    svc_c: float = 10.0
    svc_gamma: str | float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.neighbours, bool) or not isinstance(self.neighbours, int) or self.neighbours < 1:
            raise AttackOptionsError(f"neighbours (MIA-NN's k) must be an integer >= 1, got {self.neighbours!r}")
        if self.nn_feature not in FEATURE_KINDS:
            raise AttackOptionsError(f"unknown MIA-NN feature {self.nn_feature!r}; choose one of "
                                     f"{', '.join(FEATURE_KINDS)}")
        if self.mia_signal not in MIA_SIGNALS:
            raise AttackOptionsError(f"unknown MIA-efficacy signal {self.mia_signal!r}; choose one of "
                                     f"{', '.join(MIA_SIGNALS)}")
        if not isinstance(self.per_example_variance, bool):
            raise AttackOptionsError(f"per_example_variance must be True or False, got {self.per_example_variance!r}")
        if not _positive_number(self.svc_c):
            raise AttackOptionsError(f"svc_c (MIA-NN's SVC C) must be a positive number, got {self.svc_c!r}")
        if self.svc_gamma not in ("scale", "auto") and not _positive_number(self.svc_gamma):
            raise AttackOptionsError(f"svc_gamma must be 'scale', 'auto' or a positive number, got {self.svc_gamma!r}")

    @property
    def svc(self) -> dict[str, float | str]:
        """MIA-NN's SVC settings, as keyword arguments."""
        return {"C": self.svc_c, "gamma": self.svc_gamma}


def _positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def lazy(make: Callable[[], Any]) -> Callable[[], Any]:
    """A zero-argument function computed on first call and remembered: shared work between callbacks."""
    return functools.cache(make)


@dataclass
class CellContext:
    """Everything a callback needs about one benchmark cell, and where it writes its scores.

    The model collections are lazy functions, so a callback that needs them triggers the work
    (training references, unlearning in-shadows) once, and the next callback reuses it.

    Args:
        outputs: computes (once) and caches model outputs on the cell's splits.
        oracle: the oracle's outputs.
        oracle_meta: the oracle's training metadata (``train_time_s``).
        forget_classes: the cell's forget classes.
        seed: seed of the attacks' own randomness (subsampling, SVC).
        references: outputs of the M reference models (retrained on D_r).
        retrain_shadows: outputs of further retrained models, the "unlearned shadows" of retraining
            (docs/protocol.md 4.6), and of one more retrained model that the oracle's U-LiRA scores.
        method_shadows: outputs of the S in-shadows unlearned with the method under test.
        in_shadows: outputs of the S in-shadows as trained (on D, before any unlearning): the IN models of
            RMIA's online variant.
        options: attack settings.
        method_key: the cache key of the unlearned model's outputs (None: computed, not cached).
        shared: results every method of the cell shares (the nulls from retrained models), computed
            by the first method's callbacks and reused by the others.
        oracle_model: the oracle itself, for the probes that run models (:mod:`attacks.probes`; None: the cell
            gives no models, and those probes are skipped).
        reference_models: the M reference models themselves (the probes' null).
        probe_data: the cell's data and fine-tuning settings, as the probes read them.
        probe_store: keeps the probes' results under the probed model's key (None: computed, not kept).
    """

    outputs: OutputSource
    oracle: Outputs
    oracle_meta: dict[str, Any]
    forget_classes: tuple[int, ...] = ()
    seed: int = 0
    references: Callable[[], list[Outputs]] | None = None
    retrain_shadows: Callable[[], tuple[list[Outputs], Outputs]] | None = None
    method_shadows: Callable[[], list[Outputs]] | None = None
    in_shadows: Callable[[], list[Outputs]] | None = None
    options: AttackOptions = field(default_factory=AttackOptions)
    method_metrics: dict[str, float] = field(default_factory=dict)
    oracle_metrics: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    method_key: str | None = None
    shared: dict[str, Any] = field(default_factory=dict)
    oracle_model: Callable[[], nn.Module] | None = None
    reference_models: Callable[[], list[nn.Module]] | None = None
    probe_data: ProbeData | None = None
    probe_store: ProbeStore | None = None
    _token: str = field(default_factory=lambda: uuid.uuid4().hex, repr=False)  # this context's own memo key

    def method_outputs(self, pl_module: L.LightningModule) -> Outputs:
        """The unlearned model's outputs: computed by the first callback that asks, then shared.

        The memo key names this context, never the module's ``id()``: the provider outlives the modules of
        the cell's earlier methods, and a freed module's id can be reused by the next one (which once
        gave one method's row another method's scores)."""
        return self.outputs.of(pl_module.model, model_id=f"unlearned:{self.method_key or self._token}",
                               cached_key=self.method_key)

    def once(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time any method of the cell asks for ``name``; the same value after."""
        if name not in self.shared:
            self.shared[name] = compute()
        return self.shared[name]

    def require(self, what: str) -> Any:
        value = getattr(self, what)
        if value is None:
            raise ScoreUndefined(f"this attack needs {what.replace('_', ' ')}, and the cell provides none")
        return value()


class MetricCallback(Callback):
    """Computes scores when the unlearning fit ends, for the method and for the oracle.

    Subclasses implement :meth:`compute` (a score of one model's outputs) or, when the method and the
    oracle are scored differently, :meth:`score_method` and :meth:`score_oracle`. They hold no state
    but the context, so their order does not matter.

    Every subclass declares ``metrics``: each key it writes into ``method_metrics`` / ``oracle_metrics``
    (an empty tuple for one that writes diagnostics only). No default, so registering a callback that
    forgot it fails instead of its scores going unreported.
    """

    metrics: ClassVar[tuple[MetricInfo, ...]]

    def __init__(self, context: CellContext) -> None:
        self.context = context

    def compute(self, outputs: Outputs) -> dict[str, float]:
        raise NotImplementedError

    def score_method(self, outputs: Outputs) -> dict[str, float]:
        return self.compute(outputs)

    def score_oracle(self) -> dict[str, float]:
        return self.compute(self.context.oracle)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.score(self.context.method_outputs(pl_module), pl_module)

    def score(self, method: Outputs, module: Any = None) -> None:
        """Write this callback's scores of the unlearned model's ``method`` outputs (and the oracle's) into
        the context. ``module`` is the unlearned LightningModule, for callbacks that read its attributes
        (TRW's ``class_similarity``); re-scoring from cached outputs passes a stand-in that has them."""
        ctx = self.context
        for target, score, into in (("method", lambda: self.score_method(self._finite(method)), ctx.method_metrics),
                                    ("oracle", self.score_oracle, ctx.oracle_metrics)):
            try:
                into.update(score())
            except ScoreUndefined as exc:  # e.g. a diverged model: the score does not exist; any other error is a bug
                ctx.diagnostics.setdefault("errors", []).append(f"{type(self).__name__} ({target}): {exc}")

    @staticmethod
    def _finite(outputs: Outputs) -> Outputs:
        if not outputs.finite():
            raise ScoreUndefined("non-finite model outputs (a diverged model): the score does not exist")
        return outputs
