"""The maths of every attack and distance, as pure functions over model outputs (docs/protocol.md, sections 2 to 4b).

Nothing here runs a model: inputs are logits, probabilities, labels or per-model statistics, so each
function can be tested against a reference implementation on hand-made data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.svm import SVC
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_roc

from attacks.errors import ScoreUndefined

# -- shared pieces ----------------------------------------------------------------------------------


def balanced_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean of the recall of each class, in percent (50 = chance for two balanced guesses)."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    recalls = [float(np.mean(pred[truth == c] == c)) for c in np.unique(truth)]
    return 100.0 * float(np.mean(recalls))


def require_finite(*arrays) -> None:
    """Raise :class:`ScoreUndefined` when an input holds NaN or infinity (a diverged model's outputs)."""
    for a in arrays:
        if not np.isfinite(np.asarray(a)).all():
            raise ScoreUndefined("non-finite model outputs (a diverged model): the score does not exist")


def svc_attack(train_neg: np.ndarray, train_pos: np.ndarray, test_neg: np.ndarray, test_pos: np.ndarray, *,
               C: float = 1.0, gamma: str | float = "scale") -> float:
    """Fit an RBF SVC on (negatives 0, positives 1) and return its balanced accuracy (percent) on the test set.

    Every sample is used: the classes are balanced by weights (``class_weight="balanced"``) when fitting and
    by the balanced accuracy when testing, so the score depends on no random subsample (the SVC itself is
    deterministic).
    """
    if min(len(train_neg), len(train_pos), len(test_neg), len(test_pos)) == 0:
        raise ScoreUndefined("an SVC attack needs samples of both kinds to train and to test on")
    require_finite(train_neg, train_pos, test_neg, test_pos)
    x_train = np.concatenate([train_neg, train_pos])
    y_train = np.r_[np.zeros(len(train_neg)), np.ones(len(train_pos))]
    clf = SVC(kernel="rbf", C=C, gamma=gamma, class_weight="balanced").fit(x_train, y_train)
    x_test = np.concatenate([test_neg, test_pos])
    return balanced_accuracy(clf.predict(x_test), np.r_[np.zeros(len(test_neg)), np.ones(len(test_pos))])


# -- MIA-NN (docs/protocol.md, section 3) ------------------------------------------------------------------------

FEATURE_KINDS = ("prob", "logprob", "renorm")


def neighbour_classes(reference_probs: Sequence[Tensor], forget_classes: Sequence[int], k: int = 3) -> list[int]:
    """The ``k`` classes outside the forget classes with the highest mean probability over D_f under
    the reference models.

    Args:
        reference_probs: one (n, K) probability matrix on D_f per reference model.
        forget_classes: the forget classes F.
        k: how many neighbours.
    """
    mean = torch.stack([p.double() for p in reference_probs]).mean(dim=(0, 1))
    mean[list(forget_classes)] = -math.inf
    if k > int(torch.isfinite(mean).sum()):
        raise ValueError(f"k={k} neighbour classes asked for, but only {int(torch.isfinite(mean).sum())} are retained")
    return torch.topk(mean, k).indices.tolist()


def neighbour_features(logits: Tensor, neighbours: Sequence[int], kind: str = "prob") -> np.ndarray:
    """The attack's feature of a model on each sample: its output on the neighbour classes.

    ``prob``: probabilities of the neighbours (default); ``logprob``: their log-probabilities;
    ``renorm``: the distribution restricted to the neighbours and renormalised.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown MIA-NN feature {kind!r}; choose one of {', '.join(FEATURE_KINDS)}")
    logp = logits.double().log_softmax(dim=1)[:, list(neighbours)]
    if kind == "logprob":
        return logp.numpy()
    if kind == "renorm":
        return logp.softmax(dim=1).numpy()
    return logp.exp().numpy()


def mia_nn_reference(ref_train: Sequence[np.ndarray], target_train: np.ndarray, ref_test: Sequence[np.ndarray],
                     target_test: np.ndarray, **svc: float | str) -> float:
    """MIA-NN, reference mode: can an SVC tell the target model's neighbour features from those of
    retrained models? Trained on D_f features, measured on T_f (percent; 50 = indistinguishable).

    Args:
        ref_train: per reference model, its (n, k) features on D_f (pooled; every sample, class-weighted).
        target_train: the target model's features on D_f.
        ref_test, target_test: the same on T_f.
        svc: the SVC's ``C`` and ``gamma``.
    """
    return svc_attack(np.concatenate(ref_train), target_train, np.concatenate(ref_test), target_test, **svc)


def mia_nn_shadow(ref_train: Sequence[np.ndarray], shadow_train: Sequence[np.ndarray], oracle_test: np.ndarray,
                  target_test: np.ndarray, **svc: float | str) -> float:
    """MIA-NN, shadow mode (a full attacker): the SVC learns unlearned in-shadows (1) against references
    (0) on D_f, then scores the target (1) against the oracle (0) on T_f."""
    return svc_attack(np.concatenate(ref_train), np.concatenate(shadow_train), oracle_test, target_test, **svc)


# -- U-LiRA (docs/protocol.md, section 4) ------------------------------------------------------------------------


def logit_confidence(logits: Tensor, labels: Tensor) -> Tensor:
    """psi = log p_y - log(1 - p_y), computed stably as logit_y - logsumexp of the other logits."""
    logits = logits.double()
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], -math.inf)
    return true - torch.logsumexp(others, dim=1)


def _normal_logpdf(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    return -0.5 * (torch.log(2 * math.pi * var) + (x - mean) ** 2 / var)


def ulira_scores(target: Tensor, in_stats: Tensor, out_stats: Tensor, *, per_example_variance: bool = False,
                 min_variance: float = 1e-6) -> Tensor:
    """Per-example log-likelihood ratio log N(psi; in) - log N(psi; out).

    Args:
        target: (n,) statistic of the scored model on each sample.
        in_stats: (S, n) statistic of the unlearned in-shadows.
        out_stats: (M, n) statistic of the reference (retrained) models.
        per_example_variance: fit a variance per sample instead of one pooled over samples. The pooled
            default is the standard pooled estimator (the mean over samples of the unbiased per-sample
            variances), sound for S, M of 8 to 16; it is not what Carlini et al.'s published LiRA code
            computes (medians and a population standard deviation).
        min_variance: floor that keeps a degenerate Gaussian finite.
    """
    target, in_stats, out_stats = target.double(), in_stats.double(), out_stats.double()
    mu_in, mu_out = in_stats.mean(0), out_stats.mean(0)
    if per_example_variance:
        var_in, var_out = in_stats.var(0, unbiased=True), out_stats.var(0, unbiased=True)
    else:  # pooled over examples: the mean of the per-example variances
        var_in = in_stats.var(0, unbiased=True).mean().expand_as(mu_in)
        var_out = out_stats.var(0, unbiased=True).mean().expand_as(mu_out)
    var_in, var_out = var_in.clamp_min(min_variance), var_out.clamp_min(min_variance)
    return _normal_logpdf(target, mu_in, var_in) - _normal_logpdf(target, mu_out, var_out)


def ulira_leave_one_out(positives: Tensor, negatives: Tensor, *, per_example_variance: bool = False
                        ) -> tuple[Tensor, Tensor]:
    """Leave-one-model-out U-LiRA scores: every model scored against Gaussians fitted on all the others.

    A model's statistics move together through a per-model offset, so one positive and one negative
    model are worth about two independent samples; scoring every model instead of one pair cuts the
    estimator's spread under the null roughly in half, with no extra training.

    Args:
        positives: (P, n) statistic of the models that went through the method: the scored model and the
            S unlearned in-shadows (for the oracle's row: further retrained models).
        negatives: (N, n) statistic of retrained models: the oracle and the M references.
        per_example_variance: as in :func:`ulira_scores`.

    Returns:
        (P, n) and (N, n) log-likelihood ratios; row ``j`` of each is scored with model ``j`` left out of
        the Gaussian of its own side (the other side's Gaussian uses all of its models).
    """
    if len(positives) < 3 or len(negatives) < 3:
        raise ScoreUndefined("leave-one-model-out U-LiRA needs at least 3 models per side (2 left to fit a "
                             f"variance), got {len(positives)} and {len(negatives)}")

    def held_out(side: Tensor, other: Tensor, positive: bool) -> Tensor:
        rows = []
        for j in range(len(side)):
            rest = torch.cat([side[:j], side[j + 1:]])
            in_stats, out_stats = (rest, other) if positive else (other, rest)
            rows.append(ulira_scores(side[j], in_stats, out_stats, per_example_variance=per_example_variance))
        return torch.stack(rows)

    positives, negatives = positives.double(), negatives.double()
    return held_out(positives, negatives, True), held_out(negatives, positives, False)


def model_balanced_accuracy(positive: Tensor, negative: Tensor) -> float:
    """Balanced accuracy at threshold 0 (percent) of (models, samples) scores, every model weighted equally."""
    tpr = float((positive > 0).double().mean(dim=1).mean())
    tnr = float((negative <= 0).double().mean(dim=1).mean())
    return 50.0 * (tpr + tnr)


def ulira_null(retrained: Tensor, positives: int, *, draws: int = 200, seed: int = 0,
               per_example_variance: bool = False) -> Tensor:
    """Leave-one-model-out U-LiRA scores under the null: the statistics of exchangeable retrained models
    (none saw the forget class) split at random into ``positives`` "unlearned" models and the rest; one
    score per draw. Their mean is 50 in expectation and their spread is what a score difference is worth.

    Args:
        retrained: (R, n) statistic of R retrained models (the oracle, the references and the further ones).
        positives: how many play the method's side (S + 1 in a cell).
        draws: random splits.
        seed: seed of the splits.
        per_example_variance: as in :func:`ulira_scores`.
    """
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(draws):
        order = torch.randperm(len(retrained), generator=generator)
        pos, neg = retrained[order[:positives]], retrained[order[positives:]]
        scores.append(model_balanced_accuracy(*ulira_leave_one_out(pos, neg,
                                                                  per_example_variance=per_example_variance)))
    return torch.tensor(scores, dtype=torch.float64)


def ulira_model_summary(positive: Tensor, negative: Tensor) -> dict[str, float]:
    """U-LiRA's reported numbers from (models, samples) score matrices: balanced accuracy at threshold 0
    with every model weighted equally (percent; 50 = the attack cannot tell the sides apart), AUC over all
    (model, sample) scores, and TPR at 1% and 0.1% FPR (percent)."""
    roc = roc_summary(positive, negative)
    return {"ULiRA": model_balanced_accuracy(positive, negative), "ULiRA_AUC": roc["AUC"],
            "ULiRA_TPR1": roc["TPR1"], "ULiRA_TPR01": roc["TPR01"]}


def roc_summary(positive: Tensor, negative: Tensor) -> dict[str, float]:
    """The ROC of membership scores (higher = "member"), every score one point whatever its shape: the area
    under the curve (``AUC``; ties count half) and the true-positive rates, in percent, at 1% and 0.1% false
    positives (``TPR1``, ``TPR01``; the highest TPR among thresholds whose FPR stays at or below them)."""
    scores = torch.cat([positive.flatten(), negative.flatten()])
    truth = torch.cat([torch.ones(positive.numel()), torch.zeros(negative.numel())]).long()
    fpr_curve, tpr_curve, _ = binary_roc(scores, truth)
    return {"AUC": float(binary_auroc(scores, truth)), "TPR1": _tpr_at(fpr_curve, tpr_curve, 0.01),
            "TPR01": _tpr_at(fpr_curve, tpr_curve, 0.001)}


def _tpr_at(fpr_curve: Tensor, tpr_curve: Tensor, fpr: float) -> float:
    under = tpr_curve[fpr_curve <= fpr]
    return 100.0 * float(under.max()) if len(under) else 0.0


def ulira_summary(positive: Tensor, negative: Tensor) -> dict[str, float]:
    """U-LiRA's reported numbers from scores of the unlearned model (positives) and of the oracle
    (negatives): balanced accuracy at threshold 0 (percent), AUC, and TPR at 1% FPR (percent)."""
    scores = torch.cat([positive, negative]).double()
    truth = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))]).long()
    tpr = float((positive > 0).double().mean())
    tnr = float((negative <= 0).double().mean())
    fpr_curve, tpr_curve, _ = binary_roc(scores, truth)
    at_1pct = tpr_curve[fpr_curve <= 0.01]
    return {"ULiRA": 50.0 * (tpr + tnr), "ULiRA_AUC": float(binary_auroc(scores, truth)),
            "ULiRA_TPR1": 100.0 * float(at_1pct.max()) if len(at_1pct) else 0.0}


# -- RMIA (docs/protocol.md, section 4b; Zarifzadeh, Liu and Shokri, ICML 2024) ----------------------------------

RMIA_OFFLINE_A = 0.3  # the default of get_out_ref_signals in the authors' privacy_meter (their CIFAR-10 configs: 0.33)
RMIA_GAMMA = 1.0  # privacy_meter's run_rmia counts ratios > 1 (the paper's reproduction configs used 2)


def rmia_marginal(out_probs: Tensor, in_probs: Tensor | None = None, *, offline_a: float = RMIA_OFFLINE_A) -> Tensor:
    """p(x), the probability of each sample's label averaged over reference models in which half of the
    worlds hold the sample (IN) and half do not (OUT).

    Args:
        out_probs: (M, n) true-label probabilities under the OUT reference models.
        in_probs: (S, n) the same under IN models (the online variant): p(x) = (mean IN + mean OUT) / 2, the
            two kinds weighted equally whatever S and M. None (offline): the paper's linear approximation
            p(x) = ((1 + a) p_OUT(x) + (1 - a)) / 2, from assuming p_IN(x) = a p_OUT(x) + (1 - a).
        offline_a: a, in [0, 1].
    """
    if not 0.0 <= offline_a <= 1.0:
        raise ValueError(f"RMIA's offline a must lie in [0, 1], got {offline_a!r}")
    p_out = out_probs.double().mean(0)
    if in_probs is None:
        return ((1 + offline_a) * p_out + (1 - offline_a)) / 2
    return (in_probs.double().mean(0) + p_out) / 2


def rmia_scores(target_x: Tensor, marginal_x: Tensor, target_z: Tensor, marginal_z: Tensor, *,
                gamma: float = RMIA_GAMMA) -> Tensor:
    """RMIA's score of each sample x: the fraction of population samples z whose pairwise likelihood ratio
    LR(x, z) = [p(x|θ) / p(x)] / [p(z|θ) / p(z)] exceeds ``gamma`` (1 = x looks more like a member than every z).

    Args:
        target_x: (n,) the target model's true-label probabilities of the samples x.
        marginal_x: (n,) their p(x) (:func:`rmia_marginal`).
        target_z, marginal_z: (m,) the same of the population samples z (non-members of every model).
        gamma: the threshold on LR(x, z), > 0.
    """
    if gamma <= 0:
        raise ValueError(f"RMIA's gamma must be positive, got {gamma!r}")
    if len(target_z) == 0:
        raise ScoreUndefined("RMIA needs population samples to compare with, and there are none")
    tiny = torch.finfo(torch.float64).tiny  # a marginal of exactly 0 would make its ratio undefined
    ratio_x = target_x.double() / marginal_x.double().clamp_min(tiny)
    ratio_z = target_z.double() / marginal_z.double().clamp_min(tiny)
    # LR(x, z) > gamma  <=>  ratio_x > gamma * ratio_z (ratios are >= 0, so no division by a zero ratio_z);
    # counting the z below each x in sorted order costs O((n + m) log m) rather than an (n, m) matrix
    below = torch.searchsorted(torch.sort(gamma * ratio_z).values, ratio_x, side="left")
    return below.double() / len(ratio_z)


# -- MIA-efficacy (docs/protocol.md, section 2, after SalUn) -----------------------------------------------------

MIA_SIGNALS = ("confidence", "entropy", "modified_entropy")


def true_label_confidence(probs: Tensor, labels: Tensor) -> Tensor:
    return probs.gather(1, labels[:, None]).squeeze(1)


def entropy(probs: Tensor, eps: float = 1e-30) -> Tensor:
    return -(probs * torch.log(probs.clamp_min(eps))).sum(dim=1)


def modified_entropy(probs: Tensor, labels: Tensor, eps: float = 1e-30) -> Tensor:
    """Song & Mittal (USENIX Security 2021), eq. 8:
    Mentr = -(1 - p_y) log(p_y) - sum_{i != y} p_i log(1 - p_i)."""
    probs = probs.double()
    p_y = true_label_confidence(probs, labels)
    terms = -probs * torch.log((1 - probs).clamp_min(eps))
    others = terms.sum(dim=1) - terms.gather(1, labels[:, None]).squeeze(1)
    return -(1 - p_y) * torch.log(p_y.clamp_min(eps)) + others


def mia_signal(probs: Tensor, labels: Tensor, signal: str = "confidence") -> np.ndarray:
    """The per-sample feature MIA-efficacy uses, as an (n, 1) array."""
    if signal == "confidence":
        value = true_label_confidence(probs, labels)
    elif signal == "entropy":
        value = entropy(probs)
    elif signal == "modified_entropy":
        value = modified_entropy(probs, labels)
    else:
        raise ValueError(f"unknown MIA signal {signal!r}; choose one of {', '.join(MIA_SIGNALS)}")
    return value.double().numpy()[:, None]


def class_balanced_sample(labels: Tensor, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``size`` samples spread as evenly as possible over the classes present."""
    labels = labels.numpy()
    classes = np.unique(labels)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    quota = {c: size // len(classes) for c in classes}
    for c in rng.permutation(classes)[: size % len(classes)]:
        quota[c] += 1
    # a class with too few samples gives what it has; the shortfall goes to the others in turn
    picked = {c: pools[c][: quota[c]] for c in classes}
    short = size - sum(len(p) for p in picked.values())
    while short > 0:
        spare = [c for c in classes if len(picked[c]) < len(pools[c])]
        if not spare:
            break
        for c in spare[:short]:
            picked[c] = pools[c][: len(picked[c]) + 1]
            short -= 1
    return np.sort(np.concatenate(list(picked.values())))


def mia_efficacy(retain_probs: Tensor, retain_labels: Tensor, test_probs: Tensor, test_labels: Tensor,
                 forget_probs: Tensor, forget_labels: Tensor, *, signal: str = "confidence", seed: int = 0) -> float:
    """SalUn's MIA-efficacy (percent): an RBF SVC (C=3, gamma="auto") fitted on members (a class-balanced
    sample of D_r as large as T_r) against non-members (T_r); the share of D_f it calls non-member."""
    require_finite(retain_probs, test_probs, forget_probs)
    rng = np.random.default_rng(seed)
    members = class_balanced_sample(retain_labels, len(test_labels), rng)
    x = np.concatenate([mia_signal(retain_probs[members], retain_labels[members], signal),
                        mia_signal(test_probs, test_labels, signal)])
    y = np.r_[np.ones(len(members)), np.zeros(len(test_labels))]
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return 100.0 * float(np.mean(clf.predict(mia_signal(forget_probs, forget_labels, signal)) == 0))


# -- TV (docs/protocol.md, section 2) ----------------------------------------------------------------------------


def tv_distance(probs: Tensor, oracle_probs: Tensor) -> float:
    """Mean over samples of half the L1 distance between two predictive distributions (0 = identical).

    The protocol reports it on D_f as a fraction in [0, 1]."""
    return float(0.5 * (probs.double() - oracle_probs.double()).abs().sum(dim=1).mean())
