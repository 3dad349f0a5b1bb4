"""The relearning probe (docs/protocol.md, section 4c): does a little fine-tuning bring the forgotten class back?

A copy of the model is fine-tuned for a small fixed budget of SGD steps (a) on retain data alone and (b) on k
forget-class training samples mixed into retain data, and its accuracy on the forget-class test samples T_f
(FTA) is read after each step. A model retrained without the class has nothing to recover: from retain data it
stays at FTA 0, and from k samples it learns the class only as fast as any new class is learned. A method that
only suppressed the class recovers it faster. Siddiqui et al., "From Dormant to Deleted: Tamper-Resistant
Unlearning Through Weight-Space Regularization" (arXiv 2505.22310) report that forget-set accuracy of many
unlearning methods returns to near its original level after fine-tuning on the retain set alone, while a model
retrained from scratch does not recover (their setting: example-level unlearning in vision classifiers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks.errors import ScoreUndefined
from attacks.metrics import MetricInfo
from attacks.probes import ModelProbe, ProbeData

# The probe's budget and draws, declared once: they enter its records' key (attacks.probes.ModelProbe.settings).
RELEARN_STEPS = 20  # SGD steps per variant, at the preset's fine-tuning learning rate
RELEARN_KS = (1, 10, 100)  # forget samples mixed in; capped at |D_f|
RELEARN_THRESHOLD = 50.0  # FTA (%) whose first crossing is reported as the steps it took
FORGET_SHARE = 0.5  # at most this share of a batch is forget samples (all k of them when k is smaller)


def forget_draws(n_forget: int, ks: Sequence[int], seed: int) -> dict[int, Tensor]:
    """Positions in D_f of the forget samples each k mixes in: the first min(k, n_forget) of one seeded
    permutation, so the draws are nested (k = 1's sample is among k = 10's) and every model of a cell is
    probed with the same samples."""
    order = torch.randperm(n_forget, generator=torch.Generator().manual_seed(seed))
    return {k: order[:min(k, n_forget)] for k in ks}


def _stream(n: int, count: int, generator: torch.Generator) -> Tensor:
    """``count`` positions in 0..n-1: seeded passes over a fresh permutation each, concatenated."""
    passes = -(-count // n)
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(passes)])[:count]


@dataclass(frozen=True)
class RelearnPlan:
    """The batches of one probe run: per step, positions into D_r and into the drawn forget samples."""

    retain: list[Tensor]
    forget: list[Tensor]

    @property
    def steps(self) -> int:
        return len(self.retain)


def relearn_plan(n_retain: int, n_drawn: int, *, steps: int, batch_size: int, seed: int,
                 forget_share: float = FORGET_SHARE) -> RelearnPlan:
    """Each batch holds m = min(n_drawn, floor(forget_share * batch_size)) forget samples, cycling through
    seeded passes over the n_drawn drawn ones, and batch_size - m retain samples, from seeded passes over D_r
    (n_drawn = 0: retain samples only). Seeded by ``seed`` alone: every model of a cell sees the same batches.

    Args:
        n_retain: |D_r|.
        n_drawn: how many forget samples were drawn (0 for the retain-only variant).
        steps: SGD steps.
        batch_size: samples per step.
        seed: the cell's seed.
        forget_share: the largest share of a batch the forget samples may take.
    """
    per_batch = min(n_drawn, int(forget_share * batch_size))
    generator = torch.Generator().manual_seed(seed + 1)  # other draws than forget_draws' permutation
    retain = _stream(n_retain, steps * (batch_size - per_batch), generator).split(batch_size - per_batch)
    forget = (_stream(n_drawn, steps * per_batch, generator).split(per_batch) if per_batch
              else [torch.empty(0, dtype=torch.long)] * steps)
    return RelearnPlan(list(retain), list(forget))


@torch.no_grad()
def accuracy_on(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy (%) of ``model`` in eval mode (the caller's mode is restored)."""
    was_training = model.training
    model.eval()
    correct = (model(images).argmax(dim=1) == labels).sum().item()
    model.train(was_training)
    return 100.0 * correct / len(labels)


def relearn(model: nn.Module, retain: tuple[Tensor, Tensor], forget: tuple[Tensor, Tensor], plan: RelearnPlan,
            test: tuple[Tensor, Tensor], *, lr: float, momentum: float, weight_decay: float) -> list[float]:
    """Fine-tune ``model`` in place with SGD and cross-entropy on ``plan``'s batches; return its accuracy (%) on
    ``test`` before the first step and after every step (``plan.steps`` + 1 values).

    Args:
        model: the model to fine-tune (a copy: it is changed).
        retain: D_r's (images, labels).
        forget: the drawn forget samples' (images, labels).
        plan: the batches, from :func:`relearn_plan`.
        test: T_f's (images, labels).
        lr: learning rate; momentum, weight_decay: SGD's.
    """
    device = next(model.parameters()).device
    (xr, yr), (xf, yf), (xt, yt) = ((x.to(device), y.to(device)) for x, y in (retain, forget, test))
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    model.train()
    curve = [accuracy_on(model, xt, yt)]
    for r, f in zip(plan.retain, plan.forget, strict=True):
        r, f = r.to(device), f.to(device)
        x, y = torch.cat([xr[r], xf[f]]), torch.cat([yr[r], yf[f]])
        optimiser.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimiser.step()
        curve.append(accuracy_on(model, xt, yt))
    return curve


def steps_to(curve: Sequence[float], threshold: float) -> int:
    """The first step after which accuracy reaches ``threshold`` (0: before any step); len(curve) when it never
    does within the budget (the budget plus one: censored)."""
    return next((step for step, value in enumerate(curve) if value >= threshold), len(curve))


def variants(ks: Sequence[int] = RELEARN_KS) -> list[str]:
    """The probe's variants: retain data alone, then each k."""
    return ["retain", *(f"k{k}" for k in ks)]


def _variant_metrics(variant: str, trained_on: str, column: bool) -> tuple[MetricInfo, MetricInfo, MetricInfo]:
    """One variant's score (judged against its null mean: what retrained models score) and its null's mean and sd."""
    key, label = f"relearn_FTA_{variant}", f"relearn FTA ({variant})"
    return (MetricInfo(key, label, "%", "oracle",
                       f"FTA on T_f after {RELEARN_STEPS} SGD steps at the preset's fine-tuning lr on {trained_on}, "
                       "from the model (best: the null mean, what retrained models score; higher means the class "
                       "comes back)", column=column, reference=f"{key}_null_mean", table="robustness"),
            MetricInfo(f"{key}_null_mean", f"{label} null", "%", "none",
                       f"mean of {label} over the M references (what retrained models score)", table="robustness"),
            MetricInfo(f"{key}_null_sd", f"{label} null sd", "%", "none",
                       f"standard deviation of {label} over the M references", table="robustness"))


class RelearningProbe(ModelProbe):
    """FTA after :data:`RELEARN_STEPS` SGD steps on D_r alone and with k forget samples mixed in, for the method,
    the oracle and (the null) each reference; the steps to FTA >= :data:`RELEARN_THRESHOLD` and the k's actually
    drawn go to the row's diagnostics (``relearning``)."""

    probe_name = "relearning"
    steps: ClassVar[int] = RELEARN_STEPS  # a class attribute, so a CPU smoke test can shorten it (and its key)

    @property
    def settings(self) -> dict[str, Any]:
        return {"steps": self.steps, "ks": list(RELEARN_KS), "threshold": RELEARN_THRESHOLD,
                "forget_share": FORGET_SHARE, "version": 1}

    # leaderboard columns (robustness table): retain-only fine-tuning, the tamper-resistance question, and k = 10
    metrics = (*_variant_metrics("retain", "D_r alone", column=True),
               *(m for k in RELEARN_KS for m in _variant_metrics(
                   f"k{k}", f"D_r with k = {k} forget samples (capped at |D_f|)", column=k == 10)))

    def probe(self, model: nn.Module, data: ProbeData, seed: int) -> dict[str, Any]:
        retain, forget, test = data.split("D_r"), data.split("D_f"), data.split("T_f")
        if not (len(retain[1]) and len(test[1])):
            raise ScoreUndefined("the relearning probe needs retain samples to train on and T_f samples to test on")
        start = {k: v.clone() for k, v in model.state_dict().items()}
        draws = {0: torch.empty(0, dtype=torch.long), **forget_draws(len(forget[1]), RELEARN_KS, seed)}
        scores, steps, drawn = {}, {}, {}
        for variant, k in zip(variants(), draws, strict=True):
            model.load_state_dict(start)  # every variant from the probed model's own weights
            chosen = draws[k]
            plan = relearn_plan(len(retain[1]), len(chosen), steps=self.steps, batch_size=data.batch_size,
                                seed=seed)
            curve = relearn(model, retain, (forget[0][chosen], forget[1][chosen]), plan, test, lr=data.lr,
                            momentum=data.momentum, weight_decay=data.weight_decay)
            scores[f"relearn_FTA_{variant}"] = curve[-1]
            steps[variant] = steps_to(curve, RELEARN_THRESHOLD)
            drawn[variant] = len(chosen)
        return {"scores": scores, "details": {"steps_to_threshold": steps, "forget_samples": drawn}}
