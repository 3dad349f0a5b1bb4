"""What the probes that run the models themselves share (docs/protocol.md, section 4c).

Every other score reads cached outputs. A probe needs the model: it fine-tunes a copy (the relearning probe,
:mod:`attacks.relearning`) or reads its penultimate features (the representation probe,
:mod:`attacks.representation`). Each probe is scored three ways by the same code: on the unlearned model, on the
oracle (the oracle's row) and on each of the M references, whose mean and standard deviation are the probe's
null (what retrained models score), computed once per cell.

A probe's results are a function of the probed model's weights, the cell's data and seed, and the probe's
settings, so the engine keeps them in the model cache under the probed model's key
(:class:`~attacks.probe_data.ProbeStore`): ``bench rescore``, which runs no model, reads them back, and a re-run
of the cell probes nothing again.
"""

from __future__ import annotations

import copy
import functools
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from attacks.base import MetricCallback
from attacks.errors import ScoreUndefined
from attacks.outputs import Outputs
from attacks.probe_data import ProbeData


def timed(compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``'s record with the seconds it took (``seconds``), for ``bench perf``'s figure k."""
    start = time.perf_counter()
    record = compute()
    return record | {"seconds": round(time.perf_counter() - start, 4)}


def null_summary(values: list[dict[str, float]]) -> dict[str, float]:
    """Per score of the null models' ``values``: ``<key>_null_mean`` and ``<key>_null_sd`` (NaN for one model)."""
    summary = {}
    for key in values[0]:
        column = [v[key] for v in values]
        summary[f"{key}_null_mean"] = statistics.fmean(column)
        summary[f"{key}_null_sd"] = statistics.stdev(column) if len(column) > 1 else float("nan")
    return summary


def model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@dataclass
class _Subject:
    """The model a probe is running on, for :meth:`ModelProbe.score` (cleared when scoring ends)."""

    module: Any = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class ModelProbe(MetricCallback):
    """A score computed by running a model: on the unlearned model, the oracle and the M references.

    Subclasses set ``probe_name`` and ``settings`` (every constant that changes their numbers: it enters their
    records' key) and implement :meth:`probe`, which returns ``{"scores": {key: value}, "details": {...}}``
    for one model. The method's row gets its model's scores, the oracle's row the oracle's, and both the
    null's mean and sd of every score; ``details`` go to the row's diagnostics under ``probe_name``.

    A context without models (``bench score`` from outputs alone) skips the probe: its scores do not exist
    there.
    """

    probe_name: ClassVar[str]
    settings: ClassVar[dict[str, Any]]

    def probe(self, model: nn.Module, data: ProbeData, seed: int) -> dict[str, Any]:
        raise NotImplementedError

    # -- scoring ----------------------------------------------------------------------------------------------
    def score(self, method: Outputs, module: Any = None) -> None:
        if self.context.probe_data is None:
            return  # outputs only, no models to probe
        unlearned = getattr(module, "model", None)
        self._subject = _Subject(module, model_device(unlearned) if isinstance(unlearned, nn.Module)
                                 else torch.device("cpu"))
        try:
            super().score(method, module)
        finally:
            del self._subject

    def score_method(self, outputs: Outputs) -> dict[str, float]:
        record = self._record("method", lambda: self._probe_one(self._unlearned_model()))
        self._note("method", record)
        return record["scores"] | self._null()

    def score_oracle(self) -> dict[str, float]:
        ctx = self.context
        record = ctx.once(f"{self.probe_name}:oracle",
                          lambda: self._record("oracle", lambda: self._probe_one(ctx.require("oracle_model"))))
        self._note("oracle", record)
        return record["scores"] | self._null()

    def _null(self) -> dict[str, float]:
        """The probe on each reference: the mean and sd of every score, computed once per cell."""
        ctx = self.context

        def probe_all() -> dict[str, Any]:  # loads the references only where no record is kept
            models = ctx.require("reference_models")
            if not models:
                raise ScoreUndefined(f"the {self.probe_name} probe's null needs at least one reference model")
            return {"values": [self._probe_one(m)["scores"] for m in models]}

        def compute() -> dict[str, Any]:
            record = self._record("references", probe_all)
            return {"summary": null_summary(record["values"]), "seconds": record["seconds"]}

        null = ctx.once(f"{self.probe_name}:null", compute)
        self._seconds("null", null["seconds"])
        return null["summary"]

    # -- plumbing ---------------------------------------------------------------------------------------------
    def record_name(self) -> str:
        """The probe with everything that changes its numbers: its records' name in the store."""
        return json.dumps({"probe": self.probe_name, **self.settings, **self.context.probe_data.settings()},
                          sort_keys=True)

    def _record(self, subject: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        store = self.context.probe_store
        work = functools.partial(timed, compute)
        return work() if store is None else store(self.record_name(), subject, work)

    def _probe_one(self, model: nn.Module) -> dict[str, Any]:
        # a copy on the unlearned model's device: a probe may change it, and never changes the model it is given
        copy_ = copy.deepcopy(model).to(self._subject.device)
        return self.probe(copy_, self.context.probe_data, self.context.seed)

    def _unlearned_model(self) -> nn.Module:
        model = getattr(self._subject.module, "model", None)
        if not isinstance(model, nn.Module):
            raise ScoreUndefined(f"the {self.probe_name} probe runs the unlearned model, and this scoring has none "
                                 "(nor a kept record of the probe on it)")
        return model

    def _note(self, subject: str, record: dict[str, Any]) -> None:
        """The record's details and compute time into the row's diagnostics."""
        self.context.diagnostics.setdefault(self.probe_name, {})[subject] = record.get("details", {})
        self._seconds(subject, record["seconds"])

    def _seconds(self, subject: str, seconds: float) -> None:
        """How long the probe took on ``subject`` when its record was computed (``bench perf``, figure k)."""
        self.context.diagnostics.setdefault("probe_compute_s", {}).setdefault(self.probe_name, {})[subject] = seconds
