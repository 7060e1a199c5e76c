"""Rotating a service log: file names, the rotation itself, and asking a live writer.

``LOG`` rotates into ``LOG.1.gz`` (newest) ... ``LOG.K.gz`` (oldest): renames first
(fast), then ``LOG.1.pending`` is compressed into ``LOG.1.gz``. A rotation a crash
interrupted is finished by the next one. Used by the log writer process
(system/logwriter.py) and by ``mlx-stack logs --rotate``; standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from mlx_stack.system.dirs import make_private_dirs
from mlx_stack.system.locks import FileLock, holder_pid

CHUNK = 65536
PENDING_SUFFIX = ".1.pending"


def lock_path(log_file: Path) -> Path:
    """The lock a live writer holds (its pid inside)."""
    return log_file.with_name(f".{log_file.name}.writer")


def archive_path(log_file: Path, n: int) -> Path:
    return log_file.with_name(f"{log_file.name}.{n}.gz")


def pending_path(log_file: Path) -> Path:
    """LOG after it was moved aside and before it is compressed into LOG.1.gz."""
    return log_file.with_name(log_file.name + PENDING_SUFFIX)


def shift_and_move_aside(log_file: Path, keep: int) -> bool:
    """Shift LOG.i.gz -> LOG.(i+1).gz (dropping the oldest) and rename LOG aside.

    Fast (renames only). Returns False if LOG does not exist or is empty.
    Call ``compress_pending`` afterwards. The caller holds the writer lock.
    """
    compress_pending(log_file)  # finish a rotation a crash interrupted
    try:
        if log_file.stat().st_size == 0:
            return False
    except FileNotFoundError:
        return False
    keep = max(1, keep)
    for stale in range(keep + 1, keep + 50):  # keep was lowered: drop what is now beyond it
        archive_path(log_file, stale).unlink(missing_ok=True)
    for i in range(keep - 1, 0, -1):
        src = archive_path(log_file, i)
        if src.exists():
            os.replace(src, archive_path(log_file, i + 1))
    os.replace(log_file, pending_path(log_file))
    return True


def compress_pending(log_file: Path) -> None:
    """Compress LOG.1.pending into LOG.1.gz (temp file + rename), then remove it."""
    src = pending_path(log_file)
    if not src.exists():
        return
    import gzip
    import shutil

    dest = archive_path(log_file, 1)
    tmp = dest.with_name(dest.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # logs may hold private text
    with open(src, "rb") as fin, os.fdopen(fd, "wb") as raw:
        with gzip.GzipFile(filename=log_file.name, mode="wb", fileobj=raw, compresslevel=6) as gz:
            shutil.copyfileobj(fin, gz, CHUNK)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, dest)
    src.unlink(missing_ok=True)


def live_writer_pid(log_file: Path) -> int | None:
    """The pid of the writer holding LOG's lock, or None if no writer is alive."""
    return holder_pid(lock_path(log_file))


def request_rotation(log_file: Path, keep: int) -> str:
    """Rotate LOG now: signal its live writer, or rotate it here if it has none.

    Returns "signalled", "rotated" or "empty" (nothing to rotate).
    """
    pid = live_writer_pid(log_file)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
            return "signalled"
    make_private_dirs(log_file.parent)
    with FileLock(lock_path(log_file)) as lock:
        lock.open()
        try:
            got = lock.try_acquire()
        except OSError:
            got = False
        if not got:
            # A writer started meanwhile: ask it.
            pid = live_writer_pid(log_file)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGUSR1)
            return "signalled"
        moved = shift_and_move_aside(log_file, keep)
        compress_pending(log_file)
        return "rotated" if moved else "empty"
