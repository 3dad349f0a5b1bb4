"""Per-entry lock files, so shards of one benchmark (separate jobs, possibly on separate machines sharing
a file system) never train the same cached model twice and never write one cache entry at once.

A lock is a file created with ``O_CREAT | O_EXCL`` (atomic on local file systems and NFSv3+), holding
its owner's host, pid and a random token. While held, a daemon thread refreshes its modification time
(a heartbeat). A lock is stale, and may be broken, when its owner is a dead process on this host or its
heartbeat is older than ``stale_after`` seconds (owners on other hosts, or a killed node). Breaking and
releasing happen under ``fcntl.flock`` on the folder's guard file, so two waiters cannot both judge one
lock stale and the second remove the first's fresh lock, and a broken-then-reawakened owner cannot
remove its successor's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class EntryLock:
    """An exclusive, non-blocking lock on one cache entry.

    Args:
        path: the lock file (one guard file, ``.guard``, serves every lock of its folder).
        stale_after: seconds without a heartbeat after which the lock counts as abandoned.
        heartbeat: seconds between heartbeats of a held lock.
    """

    def __init__(self, path: str | Path, *, stale_after: float = STALE_AFTER_S, heartbeat: float = HEARTBEAT_S) -> None:
        self.path = Path(path)
        self.guard_path = self.path.parent / ".guard"
        self.stale_after, self.heartbeat = stale_after, heartbeat
        self.token = uuid.uuid4().hex
        self._stop: threading.Event | None = None

    @property
    def held(self) -> bool:
        return self._stop is not None

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        fd = os.open(self.guard_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def owner(self) -> dict | None:
        """The current holder's record (host, pid, token), or None when unlocked or unreadable."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def is_stale(self) -> bool:
        """Whether the existing lock file belongs to a dead process or has missed its heartbeats."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        record = self.owner()
        if record is None:  # created but not yet written, or torn: judge by age alone
            return age > self.stale_after
        if record.get("host") == socket.gethostname() and not _pid_alive(int(record.get("pid", -1))):
            return True
        return age > self.stale_after

    def try_acquire(self) -> bool:
        """Take the lock if free (or abandoned); never blocks on another holder."""
        if self.held:
            raise RuntimeError(f"{self.path} is already held by this process")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # a second try after breaking a stale lock
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                with self._guard():
                    if not self.is_stale():
                        return False
                    self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                           "since": time.time()}, f)
            self._start_heartbeat()
            return True
        return False

    def _start_heartbeat(self) -> None:
        stop = self._stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat):
                with contextlib.suppress(OSError):
                    os.utime(self.path)

        threading.Thread(target=beat, name=f"lock-heartbeat {self.path.name}", daemon=True).start()

    def release(self) -> None:
        """Give the lock back; a lock that others broke meanwhile (a new owner's token) is left alone."""
        if self._stop is None:
            return
        self._stop.set()
        self._stop = None
        with self._guard():
            record = self.owner()
            if record is not None and record.get("token") == self.token:
                self.path.unlink(missing_ok=True)
