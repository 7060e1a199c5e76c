"""`mlx-stack models` (placeholder while the full command lands)."""

from __future__ import annotations

import typer


def models(json_: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List models."""
