"""The attacks' own error types (``attacks/`` imports nothing of ``benchmark/``)."""

from __future__ import annotations


class ScoreUndefined(ValueError):
    """A score that does not exist for these outputs (a diverged model's non-finite logits, an empty split).
    The callbacks record it in the row's diagnostics and leave the score out; any other error is a bug."""


class AttackOptionsError(ValueError):
    """An attack setting outside what the protocol defines (a user mistake: the CLI prints the message)."""
