"""Checking up front that a directory the command will write can be created and written.

A run writes its model cache and its rows only after its first models have trained; a directory it
cannot create would otherwise end the run there, minutes in, with a bare ``[Errno 2]``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from benchmark.core.errors import ConfigError


def check_writable(path: str | Path, flag: str, *, keep: bool = True) -> Path:
    """Create directory ``path`` (with its parents) and a probe file in it, then remove the probe; return
    the path. Raises :class:`ConfigError` naming ``flag``, the path and the reason when either fails.

    Args:
        path: the directory.
        flag: the option that named it, for the message.
        keep: keep the directories created here; False removes them again (a command that checks more
            after this one leaves nothing behind when a later check refuses).
    """
    path = Path(path)
    created = [part for part in (path, *path.parents) if not part.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot create this directory: {_reason(path, exc)}") from None
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)  # unique: every rank of a run probes
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot write in this directory: {exc.strerror or exc}") from None
    finally:
        for part in [] if keep else created:  # deepest first
            with contextlib.suppress(OSError):
                part.rmdir()
    return path


def _reason(path: Path, exc: OSError) -> str:
    """Why ``mkdir`` failed, naming the file that stands where a directory is needed (the errno alone,
    'Not a directory' or 'File exists', does not say which part of the path is wrong)."""
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                return f"{part} is a file, not a directory"
            break
    return exc.strerror or str(exc)
