"""`mlx-stack up` and `mlx-stack down`: start and stop the stack's processes."""

from __future__ import annotations

import sys

import typer


def up(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the exact commands (secrets masked) and start nothing."
    ),
    tier: list[str] = typer.Option(
        None, "--tier", "-t", metavar="NAME",
        help="Start only this tier (repeatable; `gateway` for the gateway alone); the gateway too "
        "if it is not running.",
    ),
    force: bool = typer.Option(
        False, "--force",
        help="Start even when the memory guard finds the tiers do not fit next to what runs (exit 5).",
    ),
) -> None:
    """Start every tier and the gateway; wait until each answered a real completion.

    On-demand tiers are left asleep (the front door starts them when a request needs
    them); name one with --tier to start it now.

    Before anything starts, the memory guard checks the tiers' serving plans against the
    memory budget and the GPU working-set limit (macOS) or available memory (Linux),
    next to what already runs: too much exits 5, naming the numbers (--force overrides).
    """
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import lifecycle

    p = paths()
    if dry_run:
        result = lifecycle.up(p, tiers=tier or None, dry_run=True)
        sys.stdout.write(result.dry_run or "")
        return
    from mlx_stack.system import interrupt

    terminal.info("starting (each service counts once it answered a real completion)…")
    with interrupt.signals_raise():  # Ctrl-C/SIGTERM: stop what this up started, exit 130
        result = lifecycle.up(p, tiers=tier or None, progress=terminal.info, force=force)
    if not result.started:
        terminal.success(
            "already running, nothing changed: " + ", ".join(result.already_running)
        )
    else:
        terminal.success(f"started {', '.join(result.started)} in {result.seconds:.1f} s")
        if result.already_running:
            terminal.info("already running: " + ", ".join(result.already_running))
    terminal.info(f"endpoint: {result.endpoint}  (API key: `mlx-stack status --show-key`)")


def down(
    tier: list[str] = typer.Option(
        None, "--tier", "-t", metavar="NAME",
        help="Stop only this tier (repeatable; `gateway` for the gateway); the rest keeps running.",
    ),
) -> None:
    """Stop the stack (on-demand tiers too): SIGTERM each process group, SIGKILL after 10 s."""
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import lifecycle

    result = lifecycle.down(paths(), tiers=tier or None)
    if result.stopped:
        terminal.success("stopped " + ", ".join(result.stopped))
    if result.not_running:
        terminal.info("was not running: " + ", ".join(result.not_running))
    if result.still_serving:
        from mlx_stack.errors import ServiceError

        held = ", ".join(f"{s} (port {port}: {result.held_by[s]})"
                         for s, port in result.still_serving.items())
        raise ServiceError(f"still answering after down: {held}",
                           hint="that program is not one this stack started; stop it yourself")
    if not result.stopped and not result.not_running:
        terminal.info("nothing was running")
