"""Deep Unlearning (Kodge et al.): project each layer's weights off the forget-only activation space.

Kodge, Saha, Roy, "Deep Unlearning: Fast and Efficient Gradient-free Class Forgetting" (TMLR 2024,
arXiv 2312.00761; reference code sangamesh-kodge/class_forgetting). The inputs of every linear and
convolutional layer are collected, at the original model, for a small class-balanced sample of D_r
and a sample of D_f; an SVD of each gives the retain and forget spaces, whose basis vectors are
weighted by their share of the activation energy. Removing from the forget space what it shares with
the retain space isolates the class-discriminative directions, and each layer's weights are projected
away from them: ``W <- W (I - (M_f - M_f M_r))^T``.

With ``U diag(s) V^T`` the SVD of a layer's (features x samples) input matrix and
``r_i = s_i^2 / sum_j s_j^2``, the scaled projection is ``M = U diag(a r / ((a - 1) r + 1)) U^T``
with ``a = alpha_r`` for the retain space and ``alpha_f`` for the forget space. Convolutions use the
unfolded input patches (at most ``max_patches`` of them, drawn at random). All projections are
computed from one pass of the original model and then applied together; biases, batch-norm
parameters and buffers are unchanged, and only layers of type ``nn.Linear`` and ``nn.Conv2d``
(ungrouped) are projected, the classifier head included, as in the reference code.

No training: the work happens in :meth:`prepare` and the method runs through the Trainer with zero
epochs.

Hyperparameters (defaults from the reference code's CIFAR-10 script; presets tune them on V):

- ``alpha_r`` (100), ``alpha_f`` (3): importance scaling of the retain and the forget space.
- ``samples`` (900): retain samples (split evenly over the retained classes) and forget samples. The
  reference code draws its retain samples from held-out training data; here they come from D_r,
  the data the method declares.
- ``max_patches`` (10000): most input patches per convolution entering the SVD.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.base import MethodData
from methods.adversarial import evaluating, model_device
from methods.base import UnlearningMethod
from methods.search import LogUniform


class DeepUnlearningSVD(UnlearningMethod):
    name = "svd"
    uses = frozenset({"retain", "forget"})
    # The reference code's CIFAR-10 script (alpha_r 100, alpha_f 3); presets swept alpha_r 10-1000 x alpha_f
    # 0.3-30 and chose (70, 3) and (30, 1). Training-free: no lr or epochs.
    search_space = {
        "alpha_r": LogUniform(10.0, 1000.0, published=100.0),
        "alpha_f": LogUniform(0.3, 30.0, published=3.0),
    }

    def __init__(self, model, *, alpha_r: float = 100.0, alpha_f: float = 3.0, samples: int = 900,
                 max_patches: int = 10000, epochs: int = 0, **kwargs) -> None:
        if epochs != 0:
            raise ValueError(f"svd is training-free: epochs must be 0, got {epochs}")
        if not alpha_r > 0 or not alpha_f > 0:
            raise ValueError(f"svd: alpha_r and alpha_f must be > 0, got alpha_r={alpha_r}, alpha_f={alpha_f}")
        if samples < 1 or max_patches < 1:
            raise ValueError(f"svd: samples and max_patches must be >= 1, got samples={samples}, "
                             f"max_patches={max_patches}")
        super().__init__(model, epochs=0, **kwargs)
        self.alpha_r, self.alpha_f = alpha_r, alpha_f
        self.samples, self.max_patches = samples, max_patches

    def prepare(self, data: MethodData) -> None:
        per_class = math.ceil(self.samples / len(self.retained_classes))
        x_r = class_balanced_inputs(data.retain_dataloader(shuffle=True), self.retained_classes, per_class)
        x_f = first_inputs(data.forget_dataloader(shuffle=True), self.samples)
        layers = projectable_layers(self.model)
        generator = torch.Generator().manual_seed(self.hparams.seed)
        acts_r = layer_inputs(self.model, layers, x_r, self.max_patches, generator)
        acts_f = layer_inputs(self.model, layers, x_f, self.max_patches, generator)
        projections = {name: forget_projection(scaled_projection(acts_r[name], self.alpha_r),
                                               scaled_projection(acts_f[name], self.alpha_f))
                       for name in layers if name in acts_r and name in acts_f}  # layers the forward pass used
        with torch.no_grad():
            for name, projection in projections.items():
                w = layers[name].weight
                w.copy_((w.flatten(1) @ projection.T.to(w.device, w.dtype)).view_as(w))


def projectable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers the method projects: every ``nn.Linear`` and every ungrouped, numerically padded ``nn.Conv2d``."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.Linear)
            or (isinstance(m, nn.Conv2d) and m.groups == 1 and not isinstance(m.padding, str))}


def class_balanced_inputs(loader: Iterable, classes: tuple[int, ...], per_class: int) -> Tensor:
    """Up to ``per_class`` inputs of each class, read from ``loader`` in its order."""
    return torch.cat(list(inputs_by_class(loader, classes, per_class).values()))


def inputs_by_class(loader: Iterable, classes: tuple[int, ...], per_class: int) -> dict[int, Tensor]:
    """Up to ``per_class`` inputs of each class (in the order of ``classes``), read from ``loader`` in its order."""
    picked: dict[int, list[Tensor]] = {c: [] for c in classes}
    for x, y in loader:
        for c in classes:
            need = per_class - sum(len(t) for t in picked[c])
            if need > 0:
                picked[c].append(x[y == c][:need])
        if all(sum(len(t) for t in picked[c]) >= per_class for c in classes):
            break
    return {c: torch.cat(picked[c]) for c in classes}


def first_inputs(loader: Iterable, n: int) -> Tensor:
    """The first ``n`` inputs of ``loader``."""
    out, have = [], 0
    for x, _ in loader:
        out.append(x[: n - have])
        have += len(out[-1])
        if have >= n:
            break
    return torch.cat(out)


@torch.no_grad()
def layer_inputs(model: nn.Module, layers: dict[str, nn.Module], x: Tensor, max_patches: int,
                 generator: torch.Generator, batch_size: int = 256) -> dict[str, Tensor]:
    """Each layer's inputs on ``x`` as a (rows, features) matrix; convolutions give unfolded patches.

    A convolution keeps at most ``max_patches`` patches, drawn uniformly at random (proportionally
    from each batch).
    """
    rows: dict[str, list[Tensor]] = {name: [] for name in layers}
    share = {"value": 1.0}

    def hook(name: str, layer: nn.Module):
        def record(module, args):
            inp = args[0].detach()
            if isinstance(layer, nn.Conv2d):
                patches = F.unfold(inp, layer.kernel_size, dilation=layer.dilation, padding=layer.padding,
                                   stride=layer.stride)  # (N, C * kh * kw, L), ordered like weight.flatten(1)
                mat = patches.transpose(1, 2).reshape(-1, patches.shape[1])
                keep = min(len(mat), max(1, math.ceil(max_patches * share["value"])))
                if keep < len(mat):
                    mat = mat[torch.randperm(len(mat), generator=generator)[:keep].to(mat.device)]
            else:
                mat = inp.reshape(-1, inp.shape[-1])
            rows[name].append(mat.float().cpu())
        return record

    handles = [layer.register_forward_pre_hook(hook(name, layer)) for name, layer in layers.items()]
    device = model_device(model)
    try:
        with evaluating(model):
            for start in range(0, len(x), batch_size):
                chunk = x[start:start + batch_size]
                share["value"] = len(chunk) / len(x)
                model(chunk.to(device))
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(parts) for name, parts in rows.items() if parts}


def scaled_projection(activations: Tensor, alpha: float) -> Tensor:
    """``U diag(alpha r / ((alpha - 1) r + 1)) U^T`` for the SVD of the (features x rows) matrix."""
    u, s, _ = torch.linalg.svd(activations.T.double(), full_matrices=False)
    energy = s.pow(2)
    r = energy / energy.sum().clamp_min(torch.finfo(energy.dtype).tiny)
    importance = alpha * r / ((alpha - 1) * r + 1)
    return (u * importance) @ u.T


def forget_projection(m_r: Tensor, m_f: Tensor) -> Tensor:
    """``I - (M_f - M_f M_r)``: removes the forget space minus what it shares with the retain space."""
    eye = torch.eye(len(m_f), dtype=m_f.dtype)
    return (eye - (m_f - m_f @ m_r)).float()
