"""Console-script entry point.

`--version` and the plain forms of `status` (`status [--json] [--show-key]`, a check
scripts and people run often) are answered before Typer and the command tree are
imported (they cost ~60 ms); everything else goes to the Typer app.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from mlx_stack import __version__

        sys.stdout.write(f"mlx-stack {__version__}\n")
        return
    from mlx_stack.cli.status_view import fast

    code = fast(sys.argv[1:])
    if code is not None:
        _exit_now(code)
    from mlx_stack.cli.app import app

    app()


def _exit_now(code: int) -> NoReturn:
    """End a status check without the interpreter's teardown (~30 ms of freeing modules
    here): it has printed its answer, its writes (two caches) are atomic and done, and its
    threads have ended; only the output is flushed. A flush that fails (a closed pipe, a
    full disk) takes the usual exit, which reports it as it always has."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        sys.exit(code)
    os._exit(code)
