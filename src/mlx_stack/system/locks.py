"""Advisory file locks (``flock``): the one module that takes and probes them.

A lock belongs to an open file description, not to a process or a path: a lock taken
through one ``os.open`` of a file conflicts with every other ``os.open`` of it, even in
the same process, and the kernel drops it when that description is closed (or its
process dies), so a crash never leaves a stale lock. Hence:

- :func:`file_lock`: hold an exclusive lock for a block, waiting up to a timeout
  (``timeout=0``: fail at once); ConflictError when another holder keeps it.
- :class:`FileLock`: an exclusive lock held for as long as a process wants it, taken
  without waiting (the log writer keeps one for its whole life).
- :func:`is_held` / :func:`holder_pid`: "does someone hold it?" by asking for a shared
  lock without waiting, through a description of our own (so it never disturbs the
  holder); holders record their pid in the file.

Standard library only (the log writer process imports it); ``mlx_stack.errors`` is
imported only when :func:`file_lock` has to report a conflict.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Generator
from pathlib import Path

from mlx_stack.system.dirs import make_private_dirs

POLL_S = 0.05  # how often file_lock retries while it waits
_HELD_ELSEWHERE = (errno.EAGAIN, errno.EACCES)  # what flock says when another description holds it


class FileLock:
    """An exclusive lock on ``path`` through a description of our own (mode 0600, created
    on first use; the folder must exist). Closing it releases the lock."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = -1
        self.held = False

    def open(self) -> None:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def try_acquire(self) -> bool:
        """Take the lock without waiting: True when we hold it (now or already), False when
        another description holds it. Any other failure raises OSError."""
        if self.held:
            return True
        self.open()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in _HELD_ELSEWHERE:
                return False
            raise
        self.held = True
        return True

    def acquire(self, timeout: float) -> bool:
        """Take the lock, retrying for up to ``timeout`` seconds (at least one try)."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)
        return True

    def record_pid(self) -> None:
        """Write our pid into the lock file (best effort) for :func:`holder_pid`."""
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the flock
        self.fd, self.held = -1, False

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 30.0, what: str = "mlx-stack") -> Generator[None]:
    """Hold an exclusive ``flock`` on ``path`` (our pid inside); wait up to ``timeout`` seconds.

    ``timeout=0`` fails at once if the lock is held. ConflictError names ``what`` holds it.
    """
    make_private_dirs(path.parent)
    with FileLock(path) as lock:
        lock.open()
        if not lock.acquire(timeout):
            from mlx_stack.errors import ConflictError

            raise ConflictError(
                f"another {what} operation holds the lock {path}",
                hint="wait for it to finish, then run the command again",
            )
        lock.record_pid()
        yield


def _probe(fd: int) -> bool:
    """True if another description holds a lock on ``fd``'s file (asks for a shared lock,
    never waits; one we get is dropped when ``fd`` is closed)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _HELD_ELSEWHERE:
            return True
        raise
    return False


def is_held(path: Path) -> bool:
    """True if some process holds a lock on ``path``. A missing file is not held, and
    neither is one whose lock cannot be probed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        return _probe(fd)
    except OSError:
        return False
    finally:
        os.close(fd)


def holder_pid(path: Path) -> int | None:
    """The pid recorded in ``path`` while some process holds its lock; None when nobody
    holds it (or the file is missing, or holds no pid). A failed probe raises OSError."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if not _probe(fd):
            return None
        raw = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(raw) if raw.isdigit() else None
    finally:
        os.close(fd)
