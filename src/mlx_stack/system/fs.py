"""Atomic writes and state-file reads (the only file-writing primitives).

Writers of shared state take ``system.locks.file_lock`` (with every other flock) around them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
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
