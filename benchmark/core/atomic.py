"""Crash-safe file writes: write to a temporary file in the same folder, fsync, then rename."""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path


def _durable_temp(path: Path, data: bytes) -> str:
    """``data`` written and fsynced to a temporary file beside ``path`` (same file system, so it can be
    renamed or linked into place); the caller removes it if it is not moved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = _durable_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_checked_atomic(path: Path, data: bytes) -> str:
    """:func:`write_bytes_atomic`, returning the sha256 that :func:`read_checked` will ask for."""
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def read_checked(path: Path, sha256: str) -> bytes | None:
    """The bytes of ``path`` if their sha256 is ``sha256``; None if they differ (a torn or damaged file) or
    the file cannot be read."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def append_line(path: Path, line: str) -> None:
    """Append one whole line with a single write on an O_APPEND descriptor, then fsync.

    The write happens under an exclusive ``flock``: shards of one grid append to one file, and O_APPEND
    alone does not keep concurrent writes whole on network file systems (NFS emulates flock with its
    own locks).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (line.rstrip("\n") + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _ends_torn(fd):  # a crash mid-line elsewhere: start afresh so this row is not glued onto it
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def _ends_torn(fd: int) -> bool:
    """Whether the file behind ``fd`` is non-empty and does not end with a newline."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def create_bytes_once(path: Path, data: bytes) -> bool:
    """Write ``path`` atomically unless it exists; return whether this call created it.

    Two processes racing to create the same file (shards starting together) cannot both win: the
    finished temporary file is hard-linked into place, which fails if the name is taken.
    """
    tmp = _durable_temp(path, data)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: check, then rename (a narrow race only)
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)
