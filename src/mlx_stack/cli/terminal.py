"""One object owns the terminal: messages go to stderr, data to stdout.

Rich is imported on first use, so commands that print nothing stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from functools import cached_property
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


class Terminal:
    @cached_property
    def out(self) -> Console:
        from rich.console import Console

        return Console(highlight=False, soft_wrap=True, width=_pipe_width(sys.stdout))

    @cached_property
    def err(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=True, width=_pipe_width(sys.stderr))

    def json(self, data: object) -> None:
        """Machine-readable output: plain JSON on stdout, nothing else."""
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        sys.stdout.flush()

    def info(self, message: str) -> None:
        self.err.print(message, markup=False)

    def success(self, message: str) -> None:
        self.err.print(f"[green]✓[/green] {_escape(message)}")

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/yellow] {_escape(message)}")

    def error(self, message: str, hint: str | None = None) -> None:
        self.err.print(f"[bold red]error:[/bold red] [red]{_escape(message)}[/red]")
        if hint:
            self.err.print(f"[dim]hint:[/dim] {_escape(hint)}")

    def print(self, renderable: RenderableType) -> None:
        self.out.print(renderable)


def _pipe_width(stream: TextIO) -> int | None:
    """Rich's 80 columns truncate our tables when piped: use 160 unless COLUMNS says.

    On a terminal (or with COLUMNS set) Rich measures by itself. The console keeps
    following ``sys.stdout``/``sys.stderr`` as they are swapped (tests do that).
    """
    if os.environ.get("COLUMNS") or (hasattr(stream, "isatty") and stream.isatty()):
        return None
    return 160


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


terminal = Terminal()
