"""``EpochMean``: a fit's step losses logged once per epoch, cheaply. Shared by the engine's classifiers
and every unlearning method."""

from __future__ import annotations

import lightning as L
from torch import Tensor


class EpochMean:
    """A fit's step losses, logged once per epoch as their mean.

    ``LightningModule.log`` costs Lightning 2 to 4 ms per call on a CPU (its result collection is moved to the
    device and updated each time): as much as a whole training step of the small presets' models. Summing
    the detached losses and logging their mean at the epoch's last batch keeps the epoch value at a fraction
    of the cost (nothing reads the per-step values: the Trainer has no logger).

    Args:
        name: the logged metric's name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.epoch = -1
        self.total: Tensor | None = None
        self.weight = 0

    def add(self, module: L.LightningModule, loss: Tensor, weight: int = 1) -> None:
        """Count one step's ``loss`` (with ``weight``, e.g. its batch size); log the mean on the last batch."""
        if module._trainer is None:  # a step called by hand (tests, notebooks): there is no epoch to log into
            return
        if module.current_epoch != self.epoch:  # an epoch whose last step logged nothing starts afresh
            self.epoch, self.total, self.weight = module.current_epoch, None, 0
        value = loss.detach() * weight
        self.total = value if self.total is None else self.total + value
        self.weight += weight
        if module.trainer.is_last_batch:
            module.log(self.name, self.total / self.weight, on_step=False, on_epoch=True, batch_size=1)
