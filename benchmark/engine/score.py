"""Score your own unlearning run: every metric and attack of a result row, from the outputs of your models.

A researcher with their own training code brings the logits and labels, per split, of five roles (see
docs/protocol.md, section 1): the unlearned model (``target``), the oracle, the M references, the S in-shadows
unlearned by the same method, and the S + 1 further retrained models behind the nulls. :func:`score_outputs`
feeds them to the suite's own attack callbacks (the registered ones, through a
:class:`~attacks.base.CellContext`, as ``bench run`` and ``bench rescore`` do), so the numbers are computed by
the same code as a row's and come back under the same keys as its ``metrics`` and ``oracle``.

Example (``x_*``, ``y_*``: the inputs and labels of each split; every model run on the same samples)::

    from benchmark.engine.score import ScoreInputs, model_outputs, score_outputs

    data = {"D_f": (x_df, y_df), "D_r": (x_dr, y_dr), "T_f": (x_tf, y_tf), "T_r": (x_tr, y_tr)}
    run = lambda model: model_outputs(model, data)
    scores = score_outputs(ScoreInputs(
        target=run(unlearned), oracle=run(oracle), references=[run(m) for m in references],
        shadows=[run(m) for m in unlearned_shadows], retrained=[run(m) for m in null_models], forget_classes=[3]))
    scores.metrics["MIA_NN"], scores.oracle["MIA_NN"]  # the method's, and what a retrained model scores (the null)

``time_s`` and ``time_ratio`` are measured around the unlearning fit itself, so they are not among the scores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

import benchmark
from attacks import AttackOptions, CellContext
from attacks.outputs import Outputs
from benchmark.core.errors import ConfigError
from benchmark.engine.callbacks import attack_callbacks, declared_metrics
from benchmark.engine.grid import check_neighbours
from benchmark.engine.models import predict_logits
from benchmark.report.leaderboard import cell_gaps
from benchmark.report.store import finite_metrics
from datamodules.base import EVAL_SPLITS, check_forget_classes

SINGLE_ROLES = ("target", "oracle")
MANY_ROLES = ("references", "shadows", "retrained")
ROLES = SINGLE_ROLES + MANY_ROLES
ROLE_MEANING = {
    "target": "the unlearned model (the method applied to the original)",
    "oracle": "the oracle (retrained from scratch without the forget classes)",
    "references": "the M reference models (further models retrained without the forget classes)",
    "shadows": "the S in-shadows (originals of other seeds, each unlearned by the same method)",
    "retrained": "the null's models (S + 1 more models retrained without the forget classes, neither the oracle "
                 "nor a reference; the oracle row's U-LiRA scores the last one)",
}
# what the registered attacks read of each role (docs/protocol.md 2-4): accuracies and MIA-efficacy of the
# target and the oracle on all four; MIA-NN's features on D_f (train) and T_f (test); U-LiRA and MIA-NN's
# shadow mode read the in-shadows on D_f alone. V is accepted and read by none.
REQUIRED_SPLITS = {"target": ("D_f", "D_r", "T_f", "T_r"), "oracle": ("D_f", "D_r", "T_f", "T_r"),
                   "references": ("D_f", "T_f", "T_r"), "shadows": ("D_f",),  # T_r: RMIA's population
                   "retrained": ("D_f", "T_f", "T_r")}
# leave-one-model-out U-LiRA fits a variance on each side with one model left out: 3 models per side, so
# M + 1 >= 3 (oracle and references), S + 1 >= 3 (target and in-shadows) and 3 null models for the oracle's row
MIN_MODELS = {"references": 2, "shadows": 2, "retrained": 3}
FORGET_SPLITS = ("D_f", "T_f")  # samples of the forget classes only; D_r and T_r hold none


class ScoreInputError(ConfigError):
    """Outputs that cannot be scored as given (a missing role or split, mismatched samples); the message says
    which model and what to fix."""


@dataclass(frozen=True)
class ScoreInputs:
    """The outputs of one unlearning run, by role (docs/protocol.md, section 1).

    Every model's outputs are on the same samples in the same order: its logits and the labels, per split
    (``D_f``, ``D_r``, ``T_f``, ``T_r``; ``V`` optional). ``REQUIRED_SPLITS`` says which splits each role needs.

    Args:
        target: the unlearned model's outputs.
        oracle: the oracle's (retrained from scratch without the forget classes).
        references: the M reference models' (further retrained models; at least 2).
        shadows: the S in-shadows' (originals of other seeds, unlearned by the same method and
            hyperparameters; at least 2).
        retrained: the null's S + 1 further retrained models (neither the oracle nor a reference; at least 3).
            The last one is the model the oracle row's U-LiRA scores, the others its "unlearned in-shadows".
        forget_classes: the forgotten classes.
        seed: seed of the attacks' own randomness (MIA-efficacy's member sample, U-LiRA's null draws); a
            ``bench run`` row uses its cell's seed.
    """

    target: Outputs | None = None
    oracle: Outputs | None = None
    references: Sequence[Outputs] = ()
    shadows: Sequence[Outputs] = ()
    retrained: Sequence[Outputs] = ()
    forget_classes: Sequence[int] = ()
    seed: int = 0

    def models(self) -> Iterator[tuple[str, str, Outputs]]:
        """(role, name, outputs) of every model given: names like ``target`` and ``references[1]``."""
        for role in SINGLE_ROLES:
            if getattr(self, role) is not None:
                yield role, role, getattr(self, role)
        for role in MANY_ROLES:
            for i, outputs in enumerate(getattr(self, role)):
                yield role, f"{role}[{i}]", outputs

    @property
    def num_classes(self) -> int:
        return int(_required(self, "target").logits[REQUIRED_SPLITS["target"][0]].shape[1])

    def checked(self) -> ScoreInputs:
        """These inputs validated, with labels as int64 and the forget classes as a sorted tuple.

        Raises:
            ScoreInputError: a role is missing or has too few models, a model lacks a split it needs or has
                malformed tensors, the models disagree on the samples, or the labels contradict the forget classes.
        """
        for role in ROLES:
            _required(self, role)
        missing = [f"{role} ({len(getattr(self, role))} given, at least {n}: {ROLE_MEANING[role]})"
                   for role, n in MIN_MODELS.items() if len(getattr(self, role)) < n]
        if missing:
            raise ScoreInputError(f"too few models for U-LiRA's leave-one-model-out variances: {'; '.join(missing)}")
        normal = {name: _normalised(role, name, outputs) for role, name, outputs in self.models()}
        num_classes = normal["target"].logits["D_f"].shape[1]
        try:
            forget = check_forget_classes(self.forget_classes, num_classes)
        except ConfigError as exc:
            raise ScoreInputError(f"forget classes {list(self.forget_classes)}: {exc}") from None
        for name, outputs in normal.items():
            _check_against(name, outputs, normal["target"], num_classes)
        _check_labels(normal["target"], forget)

        def of(role: str) -> list[Outputs]:
            return [normal[f"{role}[{i}]"] for i in range(len(getattr(self, role)))]

        return dataclasses.replace(self, target=normal["target"], oracle=normal["oracle"], references=of("references"),
                                   shadows=of("shadows"), retrained=of("retrained"), forget_classes=forget,
                                   seed=int(self.seed))


def _required(inputs: ScoreInputs, role: str) -> Any:
    value = getattr(inputs, role)
    if value is None or (role in MANY_ROLES and len(value) == 0):
        raise ScoreInputError(f"no {role!r} outputs: scoring needs {ROLE_MEANING[role]} (roles: {', '.join(ROLES)})")
    return value


def _normalised(role: str, name: str, outputs: Outputs) -> Outputs:
    """``outputs`` checked for the splits ``role`` needs, with labels as int64 (what ``gather`` indexes with)."""
    if not isinstance(outputs, Outputs):
        raise ScoreInputError(f"{name}: expected attacks.outputs.Outputs, got {type(outputs).__name__}")
    unknown = sorted((outputs.logits.keys() | outputs.labels.keys()) - set(EVAL_SPLITS))
    if unknown:
        raise ScoreInputError(f"{name}: unknown split {', '.join(unknown)}; the splits are {', '.join(EVAL_SPLITS)}")
    lacking = [s for s in REQUIRED_SPLITS[role] if s not in outputs.logits or s not in outputs.labels]
    if lacking:
        raise ScoreInputError(f"{name} has no logits or labels on {', '.join(lacking)}: the {role} need "
                              f"{', '.join(REQUIRED_SPLITS[role])}")
    labels = {}
    for split, logits in outputs.logits.items():
        y = outputs.labels.get(split)
        if y is None:
            raise ScoreInputError(f"{name}: logits on {split} but no labels")
        if logits.ndim != 2 or not logits.is_floating_point():
            raise ScoreInputError(f"{name}: {split} logits must be a float (samples, classes) matrix, "
                                  f"got {logits.dtype} of shape {tuple(logits.shape)}")
        if y.ndim != 1 or y.is_floating_point() or len(y) != len(logits):
            raise ScoreInputError(f"{name}: {split} labels must be {len(logits)} integers (one per logit row), "
                                  f"got {y.dtype} of shape {tuple(y.shape)}")
        labels[split] = y.long()
    return Outputs(logits=dict(outputs.logits), labels=labels)


def _check_against(name: str, outputs: Outputs, target: Outputs, num_classes: int) -> None:
    """Every model is scored sample by sample against the others: same classes, same samples in the same order."""
    for split, logits in outputs.logits.items():
        if logits.shape[1] != num_classes:
            raise ScoreInputError(f"{name}: {logits.shape[1]} classes on {split}, the target has {num_classes}")
        if split in target.labels and not torch.equal(outputs.labels[split], target.labels[split]):
            raise ScoreInputError(f"{name}: its {split} labels differ from the target's: every model must be run "
                                  "on the same samples in the same order")


def _check_labels(target: Outputs, forget: tuple[int, ...]) -> None:
    """D_f and T_f hold the forget classes alone, D_r and T_r none of them: wrong forget classes show here."""
    for split, y in target.labels.items():
        if split == "V":
            continue
        inside = torch.isin(y, torch.tensor(forget))
        wrong = ~inside if split in FORGET_SPLITS else inside
        if bool(wrong.any()):
            kind = "outside" if split in FORGET_SPLITS else "in"
            raise ScoreInputError(f"{int(wrong.sum())} {split} labels are {kind} the forget classes {list(forget)}: "
                                  "D_f and T_f hold the forget classes' samples, D_r and T_r the rest")


@dataclass
class Scores:
    """Every score of one run, keyed as a result row's.

    Args:
        metrics: the unlearned model's scores (``row["metrics"]`` without the timings).
        oracle: the oracle's (``row["oracle"]``): the nulls, what a retrained model scores.
        diagnostics: what the attacks record beside the scores (neighbour classes, the forget-class
            destination, U-LiRA's per-sample scores; ``errors`` for scores that do not exist, e.g. of a
            diverged model).
    """

    metrics: dict[str, float]
    oracle: dict[str, float]
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def gaps(self) -> dict[str, dict[str, float]]:
        """Avg gap and privacy gap of the unlearned model (``metrics``) and the oracle's own noise floor
        (``oracle``), as the leaderboard computes them per cell."""
        declared = declared_metrics()
        return {part: cell_gaps(scores, self.oracle, declared, protocol=benchmark.PROTOCOL)
                for part, scores in (("metrics", self.metrics), ("oracle", self.oracle))}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: ``metrics``, ``oracle``, ``gaps`` and ``diagnostics``."""
        return {"metrics": self.metrics, "oracle": self.oracle, "gaps": self.gaps(), "diagnostics": self.diagnostics}


class _NoModels:
    """The context's output source: here every output is given, so no model is ever run."""

    def of(self, model: Any, model_id: str, cached_key: str | None = None) -> Outputs:
        raise RuntimeError(f"score_outputs runs no model, but an attack asked for the outputs of {model_id}")


def score_outputs(inputs: ScoreInputs, *, options: AttackOptions | None = None) -> Scores:
    """Every metric and attack of the registered callbacks (UA, FTA, RA, TA, MIA-eff, TV, MIA-NN and its shadow
    mode with their nulls, U-LiRA with its null sd, and any plugin's), for the target and for the oracle.

    Args:
        inputs: the run's outputs (checked first: a missing role or split is an error naming it).
        options: attack settings (default: the protocol's, as ``bench run``).

    Raises:
        ScoreInputError: inputs that cannot be scored (the message names the model and what it lacks).
        ConfigError: ``options.neighbours`` leaves no room among the retained classes.
    """
    options = options or AttackOptions()
    inputs = inputs.checked()
    check_neighbours(options, inputs.num_classes, inputs.forget_classes)
    *null_shadows, null_scored = inputs.retrained  # the bank's order: retraining's in-shadows, then its scored model
    context = CellContext(
        outputs=_NoModels(), oracle=inputs.oracle, oracle_meta={}, forget_classes=inputs.forget_classes,
        seed=inputs.seed, options=options, references=lambda: list(inputs.references),
        retrain_shadows=lambda: (list(null_shadows), null_scored), method_shadows=lambda: list(inputs.shadows))
    for callback in attack_callbacks(context):
        callback.score(inputs.target)  # no module: what only an unlearned module has (TRW's similarity) is skipped
    return Scores(finite_metrics(context.method_metrics), finite_metrics(context.oracle_metrics), context.diagnostics)


def model_outputs(model: nn.Module, data: Mapping[str, tuple[Tensor, Tensor]], *, batch_size: int = 1024) -> Outputs:
    """Run ``model`` on each split's inputs (eval mode, batched, no gradients, on the model's device) and return
    its :class:`Outputs`: one inference pass per split, as the suite makes them.

    Args:
        model: a classifier returning logits.
        data: per split name (``D_f``, ``D_r``, ``T_f``, ``T_r``, optionally ``V``), its (inputs, labels).
        batch_size: samples per forward pass.
    """
    with torch.no_grad():
        logits = {split: predict_logits(model, x, batch_size=batch_size) for split, (x, _) in data.items()}
    return Outputs(logits=logits, labels={split: torch.as_tensor(y).cpu() for split, (_, y) in data.items()})
