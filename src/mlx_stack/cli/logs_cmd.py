"""`mlx-stack logs`: list service logs, show or follow one, rotate them."""

from __future__ import annotations

import typer


def logs(
    service: str = typer.Argument(None, help="Service whose log to show (a tier name, gateway, watchdog)."),
    tail: int = typer.Option(None, "--tail", "-n", min=0, help="Show the last N lines (default 50)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (across rotations)."),
    rotate: bool = typer.Option(False, "--rotate", help="Rotate now (one service's log, or all)."),
    all_: bool = typer.Option(False, "--all", help="Include rotated archives, oldest first."),
    json_: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List log files with their sizes, or show the end of one service's log."""
    import sys

    from mlx_stack.cli.terminal import terminal
    from mlx_stack.core.controls import escape_controls
    from mlx_stack.core.units import format_bytes
    from mlx_stack.paths import paths
    from mlx_stack.services import logs as svc

    p = paths()
    if rotate:
        results = svc.rotate(p, service)
        if json_:
            terminal.json([r.as_dict() for r in results])
            return
        if not results:
            terminal.info("no logs yet")
        for name, result in results:
            said = {"signalled": "rotation asked of its writer", "rotated": "rotated",
                    "empty": "empty, nothing to rotate"}[result]
            terminal.success(f"{name}: {said}")
        return
    if service is None:
        found = svc.list_logs(p)
        if json_:
            terminal.json([lg.as_dict() for lg in found])
            return
        if not found:
            terminal.info(f"no logs yet in {p.logs_dir}")
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False)
        for col in ("service", "size", "archives", "file"):
            table.add_column(col)
        for lg in found:
            arch = f"{len(lg.archives)} ({format_bytes(lg.archive_bytes)})" if lg.archives else "-"
            # File names are anyone's: never markup, never raw controls.
            table.add_row(Text(escape_controls(lg.service, one_line=True)), format_bytes(lg.size), arch,
                          Text(escape_controls(str(lg.path), one_line=True)))
        terminal.print(table)
        return
    log = svc.show(p, service, tail=tail, all_files=all_)  # lines with their controls escaped
    if json_ and not follow:
        terminal.json(log.as_dict())
        return
    out = sys.stdout
    for line in log.lines:
        out.write(line + "\n")
    out.flush()
    if follow:
        try:
            for line in svc.follow(log.path):
                out.write(line + "\n")
                out.flush()
        except KeyboardInterrupt:
            return
