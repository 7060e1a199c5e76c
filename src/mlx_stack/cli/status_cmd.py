"""`mlx-stack status`: the hardware profile (and, once configured, the services)."""

from __future__ import annotations

import typer


def status(
    json_: bool = typer.Option(False, "--json", help="Print JSON."),
    show_key: bool = typer.Option(
        False, "--show-key", help="Show the gateway API key in full (it is masked otherwise)."
    ),
) -> None:
    """Show this machine's hardware profile and the state of every service.

    Services: healthy, degraded (slow), down (alive, not answering), crashed
    (gone while it should run), stopped, or sleeping (an on-demand tier the front door
    starts on the next request that needs it); each probed with a real completion.
    """
    from mlx_stack.cli.hardware_view import render_hardware
    from mlx_stack.cli.routing_view import render_routing, routing_json, routing_report
    from mlx_stack.cli.services_view import render_services, services_report
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.services.hardware import detect

    hw = detect()
    if json_:
        report = services_report(show_key)
        terminal.json({"hardware": hw.as_dict(), **report.as_dict(), **routing_json(routing_report())})
        return
    render_hardware(hw)
    render_services(services_report(show_key), show_key)
    render_routing(routing_report())
