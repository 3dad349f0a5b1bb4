"""Original: the model before unlearning, unchanged.

The upper bound of leakage: every attack should flag it. It runs through the same Trainer and
callbacks as every other method, for zero epochs.
"""

from __future__ import annotations

from methods.base import UnlearningMethod


class Original(UnlearningMethod):
    name = "original"
    uses = frozenset()
    search_space = {}  # changes nothing: there is nothing to tune

    def __init__(self, model, *, epochs: int = 0, **kwargs) -> None:
        if epochs != 0:
            raise ValueError("original changes nothing: epochs must be 0")
        super().__init__(model, epochs=0, **kwargs)
