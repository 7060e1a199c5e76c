"""Atomic writes and state-file reads (the only file-writing primitives).

Writers of shared state take ``system.locks.file_lock`` (with every other flock) around them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from mlx_stack.errors import StateError
from mlx_stack.system.dirs import make_private_dirs


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half.

    The temp file lives in the same directory (same filesystem) and is fsynced
    before ``os.replace``; ``mode`` is applied before the rename so a secret is
    never briefly world-readable.
    """
    make_private_dirs(path.parent)
    raw = data.encode() if isinstance(data, str) else data
    import tempfile  # (its imports cost ~10 ms: only writers pay them)

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


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and force mode 0700 on it."""
    make_private_dirs(path)
    os.chmod(path, 0o700)


def is_present(path: Path) -> bool:
    """False only when ``path`` is not there (nor a parent folder); something there that cannot
    be read (a symlink loop, no permission) counts as present, so its reader says what is wrong
    (``Path.exists`` calls a symlink loop absent)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


# A state file (stack.yaml, config.yaml, pulled.yaml, a key) is a few KB. The cap also bounds
# parsing: even libyaml builds ~250k tiny nodes (the worst case of 256 KB) in about a second.
MAX_STATE_BYTES = 256 << 10


def read_state_text(path: Path, hint: str, max_bytes: int = MAX_STATE_BYTES) -> str | None:
    """The text of a state file, or None when it does not exist.

    A file we cannot read (permissions, a folder or a fifo in its place, a symlink loop),
    larger than ``max_bytes`` or not UTF-8 is a StateError (exit 3) naming the file;
    ``hint`` says how to fix it.
    """
    raw = read_state_bytes(path, hint, max_bytes)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StateError(f"{path}: not UTF-8 text (byte {exc.start})", hint=hint) from None


def read_state_bytes(path: Path, hint: str, max_bytes: int = MAX_STATE_BYTES) -> bytes | None:
    """The bytes of a state file (None: it does not exist); read_state_text's errors but UTF-8.
    Opened without blocking (a fifo never hangs the reader); at most ``max_bytes`` + 1 read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):  # a parent folder a file: same as "there is none"
        return None
    except PermissionError:
        raise StateError(f"{path}: cannot read it (permission denied)",
                         hint=f"give yourself read access (`chmod u+rw {path}`), or {hint}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateError(f"{path}: cannot read it (a symbolic link loop)",
                             hint=f"remove the link (`rm {path}`), or {hint}") from None
        raise StateError(f"{path}: cannot read it ({exc.strerror or exc})", hint=hint) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise StateError(f"{path}: is a folder, not a file", hint=f"move it away, or {hint}")
        if not stat.S_ISREG(info.st_mode):
            raise StateError(f"{path}: cannot read it (not a regular file)", hint=f"move it away, or {hint}")
        raw = b""
        if info.st_size <= max_bytes:
            with os.fdopen(fd, "rb", closefd=False) as fh:
                raw = fh.read(max_bytes + 1)  # + 1: a file that grew while we read
    except OSError as exc:
        raise StateError(f"{path}: cannot read it ({exc.strerror or exc})", hint=hint) from None
    finally:
        os.close(fd)
    if info.st_size > max_bytes or len(raw) > max_bytes:
        size = _size(max(info.st_size, len(raw)))
        raise StateError(f"{path}: too large for a state file ({size}; at most {_size(max_bytes)})",
                         hint=f"move it away, or {hint}")
    return raw


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n // 1024} KB"
