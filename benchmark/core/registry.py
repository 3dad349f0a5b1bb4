"""One registry type for everything looked up by name: methods, datasets, models and attack callbacks.

A registry refuses a second entry under a taken name (unless it is the same object, re-imported) and
entries of the wrong type; an unknown name raises an error that lists the known ones, close matches first.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from benchmark.core.errors import UnknownNameError

T = TypeVar("T")


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    """``unknown method 'ftt'. Did you mean ft? Known methods: ft, ga, ...``"""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    rest = sorted(k for k in known if k not in close)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(close + rest)}"


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Args:
        kind: what an entry is, for messages (``"method"``, ``"dataset"``, ...).
        check: raises ``TypeError`` for an object that cannot be an entry (a wrong base class).
        on_miss: called with a name that is not registered, before giving up (e.g. load an entry point).

    >>> colours = Registry("colour")
    >>> colours.register("red", 1)
    1
    >>> colours.get("red")
    1
    """

    def __init__(self, kind: str, *, check: Callable[[object], None] | None = None,
                 on_miss: Callable[[str], None] | None = None) -> None:
        self.kind = kind
        self._check = check
        self._on_miss = on_miss
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a name taken by another object is an error naming both."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"a {self.kind} name must be an identifier-like string, got {name!r}")
        if self._check is not None:
            self._check(entry)
        previous = self._entries.get(name)
        if previous is not None and previous is not entry and _qualname(previous) != _qualname(entry):
            raise ValueError(f"{self.kind} name {name!r} is defined twice: by {_qualname(previous)} "
                             f"and by {_qualname(entry)}")
        self._entries[name] = entry  # the same definition re-imported replaces itself quietly
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object."""
        return lambda entry: self.register(name, entry)

    def get(self, name: str) -> T:
        if name not in self._entries and self._on_miss is not None:
            self._on_miss(name)
        if name not in self._entries:
            raise UnknownNameError(unknown_name_message(self.kind, name, self._entries))
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self):
        return self._entries.items()

    def values(self):
        return self._entries.values()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register a throw-away entry clean up with this)."""
        self._entries.pop(name, None)
