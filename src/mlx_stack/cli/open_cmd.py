"""`mlx-stack open`: the dashboard page in the browser."""

from __future__ import annotations

import typer


def open_dashboard(
    print_only: bool = typer.Option(False, "--print", help="Print the URL without starting a browser."),
) -> None:
    """Open the dashboard (served by the front door at /) in the default browser.

    Prints the URL. The page asks for the stack key (`mlx-stack status --show-key`);
    the key is never put in the URL.
    """
    from mlx_stack.cli.dashboard_view import open_page

    open_page(launch=not print_only)
