"""The project's error types. A :class:`BenchError` is a mistake the user can fix (a typo in a name, a bad
flag, a malformed preset, a missing dataset): the command line prints its message and exits with status 2.
Anything else is a bug and keeps its traceback."""

from __future__ import annotations


class BenchError(Exception):
    """Base class of every error that a user can act on from its message alone."""


class ConfigError(BenchError, ValueError):
    """A bad value: a flag, a preset field, a hyperparameter, a forget-class set."""


class UnknownNameError(BenchError, KeyError):
    """A name that no registry knows; the message lists the known ones, close matches first."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def refuse_repeats(flag: str, items, what: str) -> None:
    """A value given twice is a typo or a misunderstanding (the cell would run once); say so rather
    than guess."""
    seen: set = set()
    for item in items:
        if item in seen:
            shown = ",".join(map(str, item)) if isinstance(item, tuple) else item
            raise ConfigError(f"{flag}: {what} {shown} is given twice")
        seen.add(item)
