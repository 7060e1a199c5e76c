"""`mlx-stack status`: the hardware profile (and, once configured, the services)."""

from __future__ import annotations

import typer


def status(json_: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show this machine's hardware profile (works before anything is configured)."""
    from mlx_stack.cli.hardware_view import render_hardware
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.services.hardware import detect

    hw = detect()
    if json_:
        terminal.json({"hardware": hw.as_dict()})
        return
    render_hardware(hw)
