"""What every command runs inside: the state folder made private, and any error below
turned into one red line and its exit code (never a traceback).

Domain errors carry their own code; an OS error on a file is a state problem (3);
Ctrl-C is 130; anything else is a bug (1), with the traceback only under
``MLX_STACK_DEBUG=1``. Used by the Typer root group and by the fast path of
``status`` (cli/main.py), which runs without Typer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from mlx_stack.errors import MlxStackError

T = TypeVar("T")


class Failed(Exception):
    """The command failed and its error was printed: exit with ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def guarded(call: Callable[[], T]) -> T:
    """``call()``; a domain error, Ctrl-C or a bug is printed and raised as :class:`Failed`.

    Click's own exceptions (usage errors, ``Exit``, ``Abort``) pass through untouched.
    """
    tighten_home()
    try:
        return call()
    except MlxStackError as exc:
        from mlx_stack.cli.terminal import terminal

        terminal.error(exc.message, exc.hint)
        raise Failed(exc.exit_code) from None
    except KeyboardInterrupt:
        from mlx_stack.cli.terminal import terminal

        terminal.error("interrupted")
        raise Failed(130) from None
    except Exception as exc:
        from mlx_stack.cli.last_resort import is_usage_error, report

        if is_usage_error(exc):  # Click's own: it prints them itself (exit 2)
            raise
        raise Failed(report(exc)) from None


def tighten_home() -> None:
    """A state folder made by an older version (0755) becomes private (0700)."""
    import os
    import stat

    from mlx_stack.paths import paths

    try:
        home = paths().home
        st = os.stat(home)
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(home, 0o700)
    except OSError:
        pass  # missing, or not ours: the command itself says what is wrong
