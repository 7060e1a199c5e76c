"""`mlx-stack install` / `uninstall`: run the watchdog at login (launchd or systemd)."""

from __future__ import annotations

import typer


def install(
    status: bool = typer.Option(False, "--status", help="Show whether the agent is loaded and running."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the unit and commands; change nothing."),
    json_: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Keep the stack running: install the watchdog as a LaunchAgent (macOS) or a
    systemd user unit (Linux) that starts at login and restarts if it dies."""
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import install as svc

    p = paths()
    if status:
        found = svc.status(p)
        if json_:
            terminal.json(found.as_dict())
            return
        kind, unit_file, st = found
        lines = [
            f"{'installed' if st.installed else 'not installed'}: {unit_file}",
            f"{kind}: {'loaded' if st.loaded else 'not loaded'}"
            + (f", {'running' if st.running else 'not running'}" if st.loaded else ""),
        ]
        if st.pid:
            lines.append(f"pid: {st.pid}")
        typer.echo("\n".join(lines))
        return
    if dry_run:
        pl = svc.plan(p)
        if json_:
            terminal.json(pl.as_dict())
            return
        typer.echo(f"# {pl.unit_file}")
        typer.echo(pl.unit_text.rstrip("\n"))
        typer.echo("# then:")
        for cmd in pl.commands:
            typer.echo(" ".join(cmd))
        return
    pl = svc.install(p)
    if json_:
        terminal.json(pl.as_dict())
        return
    terminal.success(f"watchdog installed ({pl.kind}): {pl.unit_file}")
    terminal.info("it starts at login and keeps the stack running; `mlx-stack install --status` to check")


def uninstall(json_: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Stop the watchdog and remove its login service; running services are left as they are."""
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import install as svc

    result = svc.uninstall(paths())
    if json_:
        terminal.json(result.as_dict())
        return
    if result.removed:
        terminal.success(f"watchdog uninstalled; removed {result.unit_file}")
        terminal.info("services still running were left alone; `mlx-stack down` stops them")
    else:
        terminal.info("the watchdog was not installed; nothing to do")
