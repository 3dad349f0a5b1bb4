"""Shared mechanics of the adversarial-example methods (Boundary Shrink, AMUN).

Not a method itself (it defines no :class:`~methods.base.UnlearningMethod` subclass). It holds:

- :func:`fgsm`: one signed-gradient step that raises the cross-entropy of the given labels (Goodfellow
  et al., 2015), Boundary Shrink's probe for each forget sample's nearest other class;
- :func:`pgd_l2_nearest`: an L2 projected-gradient attack whose radius doubles until the sample is
  misclassified, stopping each sample at the first point the model gets wrong, so it returns (close
  to) the nearest adversarial example, AMUN's construction;
- :func:`pgd_l2_targeted`: a targeted L2 projected-gradient attack of fixed radius from a random start
  on the ball's surface, which moves each sample towards a chosen class (L2UL's adversarial examples);
- :func:`predicted_labels`: the model's predictions, optionally with some classes ruled out (the
  "nearest but incorrect" label of Boundary Shrink never names a forget class).

All of them work on whole tensors in batches, on the model's device, with the model in eval mode (its
mode is restored afterwards) and without touching any parameter or gradient of the model. Inputs are
the normalised images the datamodules produce; perturbations are measured in that space and are not
clipped to a pixel range (the methods do not know the normalisation).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.no_grad()
def predicted_labels(model: nn.Module, x: Tensor, exclude: Sequence[int] = (), batch_size: int = 256) -> Tensor:
    """The model's top class for each input, never one of ``exclude``; returned on the CPU.

    Args:
        model: the classifier.
        x: inputs (N, ...).
        exclude: classes that may not be predicted (their logits are set to minus infinity).
        batch_size: inference batch size.
    """
    device = model_device(model)
    out = []
    with evaluating(model):
        for s in _batches(len(x), batch_size):
            logits = model(x[s].to(device)).float()
            if len(exclude):
                logits[:, list(exclude)] = float("-inf")
            out.append(logits.argmax(dim=1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def _input_gradient(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Gradient of the summed cross-entropy with respect to the inputs (parameters untouched)."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, batch_size: int = 256) -> Tensor:
    """Fast gradient sign method: ``x + eps * sign(grad_x CE(model(x), y))``; returned on the CPU.

    Args:
        model: the classifier under attack.
        x: inputs (N, ...).
        y: the labels whose loss the step raises.
        eps: L-infinity size of the step (> 0).
        batch_size: attack batch size.
    """
    if not eps > 0:
        raise ValueError(f"fgsm: eps must be > 0, got {eps}")
    device = model_device(model)
    out = []
    with evaluating(model):
        for s in _batches(len(x), batch_size):
            xb, yb = x[s].to(device), y[s].to(device)
            out.append((xb + eps * _input_gradient(model, xb, yb).sign()).detach().cpu())
    return torch.cat(out) if out else x.clone()


def pgd_l2_nearest(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, steps: int = 50,
                   step_fraction: float = 0.1, max_doublings: int = 20,
                   batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """Close-to-nearest misclassified point for each input: PGD-L2 with a growing radius.

    Each sample starts at radius ``eps``. ``steps`` normalised-gradient ascent steps of size
    ``step_fraction * radius`` on the cross-entropy of its label follow, each projected back onto the
    L2 ball of that radius around the sample; a sample stops at the first point the model
    misclassifies. Samples still classified correctly after ``steps`` steps double their radius and
    continue from where they are, at most ``max_doublings`` times. Samples the model already
    misclassifies are returned unchanged (distance 0).

    Args:
        model: the classifier under attack.
        x: inputs (N, ...).
        y: their labels.
        eps: initial radius (> 0).
        steps: PGD steps per radius.
        step_fraction: step size as a fraction of the current radius.
        max_doublings: how many times the radius may double before giving up on a sample (such a
            sample returns its last iterate, which the model still labels ``y``).
        batch_size: attack batch size.

    Returns:
        ``(x_adv, radius)`` on the CPU: the adversarial inputs and the radius of the ball each was found
        in (0 for inputs the model already misclassifies; the last radius tried for inputs the
        attack could not move).
    """
    if not eps > 0 or steps < 1 or not 0 < step_fraction <= 1 or max_doublings < 0:
        raise ValueError(f"pgd_l2_nearest needs eps > 0, steps >= 1, 0 < step_fraction <= 1 and "
                         f"max_doublings >= 0, got eps={eps}, steps={steps}, step_fraction={step_fraction}, "
                         f"max_doublings={max_doublings}")
    device = model_device(model)
    adv_out, radius_out = [], []
    with evaluating(model):
        for s in _batches(len(x), batch_size):
            x0, yb = x[s].to(device), y[s].to(device)
            adv, radius = _pgd_l2_batch(model, x0, yb, eps, steps, step_fraction, max_doublings)
            adv_out.append(adv.cpu())
            radius_out.append(radius.cpu())
    if not adv_out:
        return x.clone(), torch.empty(0)
    return torch.cat(adv_out), torch.cat(radius_out)


def _pgd_l2_batch(model: nn.Module, x0: Tensor, y: Tensor, eps: float, steps: int, step_fraction: float,
                  max_doublings: int) -> tuple[Tensor, Tensor]:
    """One batch of :func:`pgd_l2_nearest`: one forward and one backward pass per step."""
    shape = (-1,) + (1,) * (x0.dim() - 1)
    adv = x0.clone()
    radius = torch.full((len(x0),), float(eps), device=x0.device)  # the radius of the current round
    made_at = torch.zeros_like(radius)  # the radius the current iterate was made with (0: the input itself)
    active = torch.ones(len(x0), dtype=torch.bool, device=x0.device)  # not misclassified yet
    for round_ in range(max_doublings + 2):  # the last round only checks the final iterates
        for _ in range(steps if round_ <= max_doublings else 1):
            idx = active.nonzero(as_tuple=True)[0]
            if len(idx) == 0:
                return adv, made_at
            xa = adv[idx].requires_grad_(True)
            logits = model(xa)
            wrong = logits.argmax(dim=1).ne(y[idx])
            active[idx[wrong]] = False  # its current iterate is the adversarial example
            if round_ > max_doublings or wrong.all():
                continue
            loss = F.cross_entropy(logits[~wrong], y[idx[~wrong]], reduction="sum")
            (grad,) = torch.autograd.grad(loss, xa)
            keep = idx[~wrong]
            grad, ra = grad[~wrong], radius[keep]
            delta = adv[keep] + (step_fraction * ra).view(shape) * _unit_l2(grad) - x0[keep]
            adv[keep] = (x0[keep] + _project_l2(delta, ra)).detach()
            made_at[keep] = ra
        radius[active] *= 2.0
    return adv, made_at


def _unit_l2(v: Tensor) -> Tensor:
    """Each sample of ``v`` scaled to unit L2 norm (zero samples stay zero)."""
    return v / v.flatten(1).norm(dim=1).clamp_min(1e-12).view((-1,) + (1,) * (v.dim() - 1))


def _project_l2(delta: Tensor, radius: Tensor) -> Tensor:
    """Each sample of ``delta`` projected onto the L2 ball of its ``radius`` (shorter ones unchanged)."""
    scale = (radius / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)
    return delta * scale.view((-1,) + (1,) * (delta.dim() - 1))


def pgd_l2_targeted(model: nn.Module, x: Tensor, target: Tensor, *, eps: float, step: float, steps: int,
                    generator: torch.Generator | None = None, batch_size: int = 256) -> Tensor:
    """Targeted L2 PGD: inputs near ``x`` that the model assigns to ``target``; returned on the CPU.

    Each sample starts at a random point on the sphere of radius ``eps`` around it (drawn from ``generator``),
    then takes ``steps`` steps of length ``step`` along the normalised gradient that lowers the cross-entropy of
    its target class, each projected back onto the ball of radius ``eps``. Every step is taken, whether or not
    the target is already reached (as advertorch's ``L2PGDAttack``, which L2UL's reference code uses).

    Args:
        model: the classifier under attack.
        x: inputs (N, ...).
        target: the class each input is pushed towards.
        eps: L2 radius of the ball (> 0).
        step: L2 length of each step (> 0).
        steps: number of steps (>= 1).
        generator: the random start's generator (None: the global one).
        batch_size: attack batch size.
    """
    if not eps > 0 or not step > 0 or steps < 1:
        raise ValueError(f"pgd_l2_targeted needs eps > 0, step > 0 and steps >= 1, got eps={eps}, step={step}, "
                         f"steps={steps}")
    device = model_device(model)
    out = []
    with evaluating(model):
        for s in _batches(len(x), batch_size):
            x0, yb = x[s].to(device), target[s].to(device)
            start = torch.randn(x0.shape, generator=generator).to(device)
            delta = eps * _unit_l2(start)
            radius = torch.full((len(x0),), float(eps), device=device)
            for _ in range(steps):
                # descending the target's cross-entropy is ascending the gradient of its negative
                grad = -_input_gradient(model, x0 + delta, yb)
                delta = _project_l2(delta + step * _unit_l2(grad), radius).detach()
            out.append((x0 + delta).cpu())
    return torch.cat(out) if out else x.clone()
