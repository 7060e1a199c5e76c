"""Console-script entry point.

`--version` and the plain forms of `status` (`status [--json] [--show-key]`, a check
scripts and people run often) are answered before Typer and the command tree are
imported (they cost ~60 ms); everything else goes to the Typer app.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from mlx_stack import __version__

        sys.stdout.write(f"mlx-stack {__version__}\n")
        return
    from mlx_stack.cli.status_view import fast

    code = fast(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from mlx_stack.cli.app import app

    app()
