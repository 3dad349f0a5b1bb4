"""Random labels (RL): relabel each forget sample once with a class drawn uniformly among the
retained classes, then fine-tune on D_r together with the relabelled D_f.

Golatkar et al., "Eternal Sunshine of the Spotless Net" (CVPR 2020) and the RL baseline of Fan et al.,
"SalUn" (ICLR 2024, arXiv 2310.12508). The labels are drawn once, from the run's seed, as in SalUn's
reference code; each step sees a retain batch and a relabelled forget batch and minimises the
cross-entropy over both. Defaults: lr 0.01, 10 epochs.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from datamodules.base import MethodData
from methods.base import UnlearningMethod
from methods.search import Integer, LogUniform


class RandomLabels(UnlearningMethod):
    name = "rl"
    uses = frozenset({"retain", "forget"})
    # SalUn's class-wise RL setting (lr 0.01, 10 epochs); presets chose lr 0.01-0.02, epochs 3-10.
    search_space = {
        "lr": LogUniform(1e-3, 1e-1, published=1e-2),
        "epochs": Integer(1, 15, published=10),
    }

    def __init__(self, model, *, lr: float = 0.01, epochs: int = 10, **kwargs) -> None:
        super().__init__(model, lr=lr, epochs=epochs, **kwargs)

    def unlearning_data(self, data: MethodData):
        x, y = data.forget_tensors()
        generator = torch.Generator().manual_seed(self.hparams.seed)
        relabelled = TensorDataset(x, self.random_other_labels(y, generator))
        bs = self.hparams.batch_size
        return data.combine(retain=data.retain_dataloader(batch_size=bs),
                            forget=data.loader(relabelled, batch_size=bs))

    def loss(self, retain, forget):
        x = torch.cat([retain[0], forget[0]])
        y = torch.cat([retain[1], forget[1]])
        return self.cross_entropy((x, y))
