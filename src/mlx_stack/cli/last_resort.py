"""The last line of defence: an unexpected exception becomes one red line.

An ``OSError`` naming a file is nearly always the state folder (``MLX_STACK_HOME`` a
file, read-only, full, or a file we may not read): exit 3 with the fix. Anything else
is a bug: exit 1, the traceback only with ``MLX_STACK_DEBUG=1``.
"""

from __future__ import annotations

import errno
import os

from mlx_stack.errors import ExitCode

DEBUG_ENV = "MLX_STACK_DEBUG"

_STATE_ERRNOS = {
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENOSPC,
    errno.EDQUOT, errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP,
}


def is_usage_error(exc: BaseException) -> bool:
    """Click's exceptions (typer vendors its own Click, so match either by name)."""
    return any(
        c.__name__ in ("ClickException", "Abort", "Exit") and c.__module__.endswith("exceptions")
        for c in type(exc).__mro__
    )


def report(exc: BaseException) -> int:
    """Print one line for ``exc`` (plus its traceback under MLX_STACK_DEBUG=1); its exit code."""
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths

    if os.environ.get(DEBUG_ENV) == "1":
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, OSError) and (exc.filename is not None or exc.errno in _STATE_ERRNOS):
        where = f"{exc.filename}: " if exc.filename is not None else ""
        home = paths().home
        terminal.error(
            f"{where}{exc.strerror or exc}",
            hint=f"MLX_STACK_HOME ({home}) must be a folder you can read and write, on a disk "
            "with free space; fix its permissions or point MLX_STACK_HOME elsewhere",
        )
        return ExitCode.STATE
    if isinstance(exc, MemoryError):
        terminal.error("out of memory", hint="close other programs and try again")
        return ExitCode.CONFLICT
    terminal.error(
        f"internal error: {type(exc).__name__}: {str(exc)[:200]}",
        hint=f"this is a bug in mlx-stack; run again with {DEBUG_ENV}=1 for the traceback "
        "and report it",
    )
    return ExitCode.INTERNAL
