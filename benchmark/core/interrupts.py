"""Ctrl-C (SIGINT) and ``kill`` (SIGTERM) as an orderly stop of one command.

For the length of a command, both signals raise :class:`KeyboardInterrupt` wherever the command is, so
everything on the way out cleans up as it does after Ctrl-C: Lightning tears its fit down (then exits with
status 1, which the command line replaces), Optuna marks the running trial failed, atomic writes remove
their temporary files. The command line then says what was kept and exits with 128 + the signal's
number, as a shell reports a process ended by that signal. Nothing finished is lost: result rows are
appended whole and cache entries are written atomically.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Received:
    """The first stopping signal that arrived inside :func:`signals_interrupt`, or None."""

    signal: signal.Signals | None = None

    def exit_status(self) -> int:
        """128 + the signal's number (130 for SIGINT, 143 for SIGTERM); SIGINT's when none was recorded
        (a KeyboardInterrupt raised by other means)."""
        return 128 + (self.signal or signal.SIGINT)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[Received]:
    """Inside the block, SIGINT and SIGTERM raise KeyboardInterrupt and the first one is recorded; the
    previous handlers come back afterwards. Outside the main thread (where Python allows no handler) the
    block runs with the handlers as they are."""
    received = Received()

    def interrupt(signum: int, frame) -> None:
        if received.signal is None:
            received.signal = signal.Signals(signum)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {number: signal.signal(number, interrupt) for number in STOPPING_SIGNALS}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
