"""`mlx-stack status`: the hardware profile (and, once configured, the services)."""

from __future__ import annotations

import typer


def status(
    json_: bool = typer.Option(False, "--json", help="Print JSON."),
    show_key: bool = typer.Option(
        False, "--show-key", help="Show the gateway API key in full (it is masked otherwise)."
    ),
    watch: bool = typer.Option(
        False, "--watch", "-w",
        help="Live view of the front door's numbers per tier (the dashboard's); Ctrl-C stops it (exit 0).",
    ),
    interval: float = typer.Option(2.0, "--interval", min=0.5, help="Seconds between redraws with --watch."),
) -> None:
    """Show this machine's hardware profile and the state of every service.

    Services: healthy, degraded (slow), down (alive, not answering), crashed
    (gone while it should run), stopped, or sleeping (an on-demand tier the front door
    starts on the next request that needs it); each probed with a real completion.
    With --watch: state, memory, requests/s, TTFT, tok/s, fallbacks and errors per
    tier, redrawn every 2 s until Ctrl-C (exit 0).

    Exit codes: 0 every service healthy (or only slow) or sleeping, 3 a service is
    stopped, down, crashed or flapping, 4 no stack configured yet; --watch: 0 on
    Ctrl-C, 4 no stack configured yet.
    """
    if watch:
        from mlx_stack.errors import UsageError

        if json_:
            raise UsageError("--watch and --json do not combine",
                             hint="for JSON, poll GET /api/dashboard with the stack key")
        from mlx_stack.cli.dashboard_view import watch as watch_live

        watch_live(interval)
        return
    from mlx_stack.cli.status_view import show

    code = show(json_=json_, show_key=show_key)
    if code:
        raise typer.Exit(code)
