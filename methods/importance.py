"""Per-parameter gradient statistics over a loader: the shared mechanics of SSD and SalUn.

Not a method itself (it defines no :class:`~methods.base.UnlearningMethod` subclass). It holds:

- :func:`fisher_diagonal`: the squared gradient of the mean cross-entropy of each batch, averaged
  over the batches: the diagonal Fisher importance Selective Synaptic Dampening compares between
  D_f and D;
- :func:`gradient_saliency`: the magnitude of the gradient of the forget loss summed over the
  batches: SalUn's weight saliency;
- :func:`top_fraction_mask`: a hard mask of the given share of the highest scores, ranked over all
  parameters of the model together (SalUn's global threshold);
- :func:`output_norm_importance`: Memory Aware Synapses' importance (Aljundi et al., ECCV 2018), the
  magnitude of the gradient of the squared L2 norm of the model's output: L2UL's weight importance;
- :func:`fisher_ratio_mask`: the weights whose forget importance is at least ``threshold`` times their
  remain importance (SFRon's forget-remain balanced saliency, on two :func:`fisher_diagonal` results).

Statistics are computed with the model in eval mode (batch-norm statistics and dropout stay fixed,
as in both reference implementations) and through ``torch.autograd.grad``, so neither the weights
nor their ``.grad`` fields change. Results are keyed by the parameter names of
``model.named_parameters()`` and live on the model's device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.adversarial import evaluating, model_device

Scores = dict[str, Tensor]


def batch_gradients(model: nn.Module, loader: Iterable,
                    loss_of: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> Iterator[Scores]:
    """For each ``(x, y)`` batch, the gradient of ``loss_of(model(x), y)`` (by default the batch's mean
    cross-entropy) for every parameter.

    Parameters that get no gradient (unused, or ``requires_grad=False``) yield zeros.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    device = model_device(model)
    with evaluating(model):
        for x, y in loader:
            loss = loss_of(model(x.to(device)), y.to(device))
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
            yield {n: (torch.zeros_like(p) if g is None else g.detach()) for (n, p), g in zip(named, grads)}


def fisher_diagonal(model: nn.Module, loader: Iterable) -> Scores:
    """Diagonal Fisher importance: the mean over batches of the squared batch-mean gradient.

    This is how SSD's reference code estimates the importance of each parameter for a dataset.

    Raises:
        ValueError: if the loader is empty.
    """
    total: Scores = {}
    count = 0
    for grads in batch_gradients(model, loader):
        for n, g in grads.items():
            total[n] = total[n] + g.pow(2) if n in total else g.pow(2)
        count += 1
    if count == 0:
        raise ValueError("fisher_diagonal: the loader yielded no batch")
    return {n: t / count for n, t in total.items()}


def gradient_saliency(model: nn.Module, loader: Iterable) -> Scores:
    """SalUn's weight saliency: the magnitude of the forget-loss gradient, summed over the batches.

    Raises:
        ValueError: if the loader is empty.
    """
    total: Scores = {}
    for grads in batch_gradients(model, loader):
        for n, g in grads.items():
            total[n] = total[n] + g if n in total else g.clone()
    if not total:
        raise ValueError("gradient_saliency: the loader yielded no batch")
    return {n: t.abs() for n, t in total.items()}


def top_fraction_mask(scores: Scores, fraction: float) -> dict[str, Tensor]:
    """Boolean masks selecting the ``fraction`` highest scores over all tensors together.

    Exactly ``round(fraction * N)`` of the N entries are selected (ties broken by position).

    Args:
        scores: a score tensor per parameter name.
        fraction: share of entries to select, in [0, 1].
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"the mask fraction must be in [0, 1], got {fraction}")
    if not scores:
        return {}
    flat = torch.cat([s.flatten().float() for s in scores.values()])
    k = int(round(fraction * flat.numel()))
    selected = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if k > 0:
        selected[torch.topk(flat, k, sorted=False).indices] = True
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = selected[start:start + s.numel()].view_as(s)
        start += s.numel()
    return masks


def mean_squared_output_norm(outputs: Tensor, _labels: Tensor) -> Tensor:
    """The batch mean of each output's squared L2 norm: MAS's label-free loss."""
    return outputs.pow(2).flatten(1).sum(dim=1).mean()


def output_norm_importance(model: nn.Module, loader: Iterable) -> Scores:
    """Memory Aware Synapses' importance: the magnitude of the gradient of the squared output norm.

    Each batch contributes ``|gradient of its mean squared output norm| * its size``, and the sum is divided by
    the number of samples: the accumulation of L2UL's reference code (csm9493/L2UL, ``utils.py``,
    ``estimate_parameter_importance``), which takes the magnitude per batch rather than per sample. No labels
    are read. (That code differentiates the norm itself; MAS, which its comment quotes, names the square, used
    here. L2UL min-max normalises each tensor afterwards, so only relative sizes within a tensor matter.)

    Raises:
        ValueError: if the loader is empty.
    """
    sizes: list[int] = []

    def counted() -> Iterator:
        for x, y in loader:
            sizes.append(len(x))
            yield x, y

    total: Scores = {}
    for grads in batch_gradients(model, counted(), mean_squared_output_norm):
        for name, g in grads.items():
            weighted = g.abs() * sizes[-1]
            total[name] = total[name] + weighted if name in total else weighted
    if not sizes:
        raise ValueError("output_norm_importance: the loader yielded no batch")
    return {name: t / sum(sizes) for name, t in total.items()}


def fisher_ratio_mask(forget: Scores, remain: Scores, threshold: float, eps: float = 1e-15) -> dict[str, Tensor]:
    """Boolean masks of the entries with ``(forget + eps) / (remain + eps) >= threshold``.

    SFRon's balanced weight saliency: a weight is salient when it matters more for the forget data than for the
    remaining data (``eps`` as in the authors' code, so that a weight neither set moves compares as 1).

    Args:
        forget: an importance tensor per parameter name (e.g. :func:`fisher_diagonal` on D_f).
        remain: the same names' importance on the remaining data.
        threshold: the ratio a weight needs to be selected (> 0).
    """
    if not threshold > 0:
        raise ValueError(f"the saliency ratio threshold must be > 0, got {threshold}")
    if forget.keys() != remain.keys():
        raise ValueError(f"forget and remain scores name different parameters: {sorted(forget.keys() ^ remain.keys())}")
    return {name: (forget[name] + eps) / (remain[name] + eps) >= threshold for name in forget}
