"""Selective Synaptic Dampening (SSD): shrink the parameters far more important to D_f than to D.

Foster, Schoepf, Brintrup, "Fast Machine Unlearning Without Retraining Through Selective Synaptic
Dampening" (AAAI 2024, arXiv 2308.07707). The importance of every parameter for a dataset is its
diagonal Fisher information (squared gradient of the batch loss, averaged over batches), computed
at the original model on D_f and on the whole training split D = D_r + D_f. Each parameter whose
D_f importance exceeds ``alpha`` times its D importance is multiplied by
``beta = min(lambda * I_D / I_Df, 1)``; every other parameter is left exactly as it was.

No training: the work happens in :meth:`prepare` and the method runs through the Trainer with zero
epochs. Since ``beta`` is in [0, 1], parameters only ever shrink towards zero, never grow or change
sign. Importances are computed in eval mode (as the reference code does), with the preset's
unlearning batch size, on D in a seeded shuffled order.

Hyperparameters (defaults from the paper and its reference code, if-loops/selective-synaptic-dampening,
for full-class forgetting; presets may tune them on V):

- ``alpha`` (10): selection weighting, how much more important to D_f than to D a parameter must be.
- ``dampening`` (1): the dampening constant lambda.
"""

from __future__ import annotations

import torch
from torch.utils.data import ConcatDataset

from datamodules.base import MethodData
from methods.base import UnlearningMethod
from methods.importance import fisher_diagonal
from methods.search import LogUniform


class SelectiveSynapticDampening(UnlearningMethod):
    name = "ssd"
    uses = frozenset({"retain", "forget"})
    # The paper and its reference code, full-class forgetting (alpha 10, lambda 1); presets swept alpha 3-100 x
    # lambda 0.3-3 and chose alpha 12-40, lambda 1. Training-free: no lr or epochs.
    search_space = {
        "alpha": LogUniform(1.0, 100.0, published=10.0),
        "dampening": LogUniform(0.1, 10.0, published=1.0),
    }

    def __init__(self, model, *, alpha: float = 10.0, dampening: float = 1.0, epochs: int = 0, **kwargs) -> None:
        if epochs != 0:
            raise ValueError(f"ssd is training-free: epochs must be 0, got {epochs}")
        if not alpha > 0 or not dampening > 0:
            raise ValueError(f"ssd: alpha and dampening (lambda) must be > 0, got alpha={alpha}, "
                             f"dampening={dampening}")
        super().__init__(model, epochs=0, **kwargs)
        self.alpha, self.dampening = alpha, dampening
        self.dampened_fraction = 0.0

    def prepare(self, data: MethodData) -> None:
        bs = self.hparams.batch_size
        forget = data.forget_dataloader(shuffle=False, batch_size=bs)
        whole = ConcatDataset([data.retain_dataloader(shuffle=False).dataset, forget.dataset])
        importance_f = fisher_diagonal(self.model, forget)
        importance_d = fisher_diagonal(self.model, data.loader(whole, shuffle=True, batch_size=bs))
        self.dampened_fraction = dampen(self.model, importance_d, importance_f, self.alpha, self.dampening)


@torch.no_grad()
def dampen(model: torch.nn.Module, importance_d: dict[str, torch.Tensor], importance_f: dict[str, torch.Tensor],
           alpha: float, dampening: float) -> float:
    """SSD's update in place: where ``I_f > alpha * I_d``, multiply by ``min(dampening * I_d / I_f, 1)``.

    Returns the share of parameter entries that were dampened.
    """
    selected = total = 0
    for name, p in model.named_parameters():
        if name not in importance_f:
            continue
        i_d, i_f = importance_d[name], importance_f[name]
        where = i_f > alpha * i_d
        beta = (dampening * i_d / i_f.clamp_min(torch.finfo(i_f.dtype).tiny)).clamp(max=1.0)
        p[where] = p[where] * beta[where]
        selected += int(where.sum())
        total += p.numel()
    return selected / max(total, 1)
