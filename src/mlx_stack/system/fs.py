"""Atomic writes and advisory file locks (the only file-writing primitives)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Generator
from pathlib import Path

from mlx_stack.errors import ConflictError, StateError
from mlx_stack.system.dirs import make_private_dirs


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half.

    The temp file lives in the same directory (same filesystem) and is fsynced
    before ``os.replace``; ``mode`` is applied before the rename so a secret is
    never briefly world-readable.
    """
    make_private_dirs(path.parent)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 30.0, what: str = "mlx-stack") -> Generator[None, None, None]:
    """Hold an exclusive ``flock`` on ``path``; wait up to ``timeout`` seconds.

    The kernel drops the lock when the process dies, so a crash never leaves a
    stale lock behind. ``timeout=0`` fails at once if the lock is held.
    """
    make_private_dirs(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise ConflictError(
                        f"another {what} operation holds the lock {path}",
                        hint="wait for it to finish, then run the command again",
                    ) from None
                time.sleep(0.05)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing releases the flock


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and force mode 0700 on it."""
    make_private_dirs(path)
    os.chmod(path, 0o700)


def read_state_text(path: Path, hint: str) -> str | None:
    """The text of a state file, or None when it does not exist.

    A file we cannot read (permissions, a folder in its place) or that is not UTF-8
    is a StateError (exit 3) naming the file; ``hint`` says how to fix it.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a parent folder is a file: same as "there is none"
        return None
    except PermissionError:
        raise StateError(f"{path}: cannot read it (permission denied)",
                         hint=f"give yourself read access (`chmod u+rw {path}`), or {hint}") from None
    except IsADirectoryError:
        raise StateError(f"{path}: is a folder, not a file", hint=f"move it away, or {hint}") from None
    except OSError as exc:
        raise StateError(f"{path}: cannot read it ({exc.strerror or exc})", hint=hint) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StateError(f"{path}: not UTF-8 text (byte {exc.start})", hint=hint) from None
