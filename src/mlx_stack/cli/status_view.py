"""`mlx-stack status` without --watch: one service call, then its views (no Typer here:
cli/main.py runs it directly for the plain forms, so a status check starts fast)."""

from __future__ import annotations

# The plain forms main.py may answer without Typer: each flag at most once, nothing else.
FAST_FLAGS = frozenset({"--json", "--show-key"})


def show(*, json_: bool, show_key: bool) -> int:
    """Print the status (a table, or JSON); its exit code (see `status --help`)."""
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services.status import status as stack_status

    result = stack_status(paths(), show_key=show_key)
    if json_:
        terminal.json(result.as_dict())
    else:
        from mlx_stack.cli.hardware_view import render_hardware
        from mlx_stack.cli.routing_view import render_routing
        from mlx_stack.cli.services_view import render_services

        render_hardware(result.hardware)
        render_services(result.services, show_key)
        render_routing(result.routing)
    return result.exit_code


def fast(args: list[str]) -> int | None:
    """Answer ``status [--json] [--show-key]`` here; None for any other command line."""
    if args[:1] != ["status"] or not set(args[1:]) <= FAST_FLAGS or len(set(args[1:])) != len(args) - 1:
        return None
    from mlx_stack.cli.guard import Failed, guarded

    try:
        return guarded(lambda: show(json_="--json" in args, show_key="--show-key" in args))
    except Failed as exc:
        return exc.code
