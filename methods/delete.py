"""DELETE, Decoupled Distillation to Erase: distil the original's prediction on D_f with the true class masked.

Zhou et al., "Decoupled Distillation to Erase: A General Unlearning Method for Any Class-centric Tasks"
(CVPR 2025, arXiv 2503.23751). The paper splits a distillation loss into a forgetting term (mass on the
sample's own class) and a retention term (how the rest of the mass is spread, the "dark knowledge"), and keeps
only what is wanted: on each forget sample the student matches, by KL(target || student), the frozen original
model's softmax computed with the sample's own class masked out (its logit set to -inf), i.e. the original's
distribution over the other classes, renormalised. It needs no retain data.

Against its neighbours here: ``rwft`` fine-tunes towards the same renormalised target on D_f but adds
cross-entropy on D_r (and masks every forget class, where DELETE masks each sample's own label: the same
for one forget class); ``trw`` also tilts the target towards similar classes. DELETE is the closest published
rival of both, which is why it is a row.

Hyperparameters (the authors' code, shaaaaron/DELETE, CIFAR-10 script): SGD with momentum 0.9 and no weight
decay, lr 1e-3, 20 epochs (config ``unlearn_epoch: 20``), the student's batch norm in training mode
(``disable_bn`` False). Presets tune lr and epochs on V (``bench tune``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.base import UnlearningMethod, frozen_copy
from methods.search import Integer, LogUniform


def masked_target(teacher_logits: Tensor, labels: Tensor) -> Tensor:
    """The teacher's softmax with each sample's own class removed and the rest renormalised; (B, K)."""
    own = F.one_hot(labels, teacher_logits.shape[1]).bool()
    return teacher_logits.double().masked_fill(own, -torch.inf).softmax(dim=1)


class DecoupledDistillation(UnlearningMethod):
    name = "delete"
    uses = frozenset({"forget"})
    # The authors' CIFAR-10 script: lr 1e-3, 20 epochs, SGD momentum 0.9, no weight decay.
    search_space = {
        "lr": LogUniform(1e-4, 1e-1, published=1e-3),
        "epochs": Integer(1, 30, published=20),
    }

    def __init__(self, model, *, lr: float = 1e-3, epochs: int = 20, weight_decay: float = 0.0, **kwargs) -> None:
        super().__init__(model, lr=lr, epochs=epochs, weight_decay=weight_decay, **kwargs)
        self.teacher = frozen_copy(self.model)  # the original model, in eval mode, never trained

    def loss(self, retain, forget):
        x, y = forget
        with torch.no_grad():
            target = masked_target(self.teacher(x), y)
        log_p = self.model(x).log_softmax(dim=1).double()
        # KL(target || student); the masked class has target 0 and contributes nothing
        kl = (target * (target.clamp_min(1e-30).log() - log_p)).sum(dim=1).mean()
        return kl.float()
