"""`mlx-stack doctor`: check this machine and the stack; optionally write a report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from mlx_stack.services.doctor import DoctorResult

_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}


def doctor(
    json_: bool = typer.Option(False, "--json", help="Print the whole report as JSON."),
    report: Path | None = typer.Option(
        None, "--report", metavar="FILE",
        help="Also write the report (redacted JSON, with the raw hardware outputs) to FILE, "
             "to attach to a bug.",
    ),
) -> None:
    """Check this machine and the stack: hardware and the raw values behind it, Rosetta,
    Python and packages, MLX/Metal, free disk, ports, state files, secrets, the login
    service and each running service. Each check is PASS, WARN, FAIL or SKIP (does not
    apply here), with a fix.

    Exit codes: 0 nothing failed (warnings allowed), 1 at least one check FAILed,
    2 the report file cannot be written.
    """
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import doctor as svc

    result = svc.run(paths(), report_file=report)
    if json_:
        terminal.json(result.as_dict())
    else:
        _render(result)
    if result.written_to is not None:
        terminal.info(f"report written to {result.written_to} (keys redacted, home folder shown as ~); "
                      "attach it to your bug report")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _render(result: DoctorResult) -> None:
    from rich.table import Table
    from rich.text import Text

    from mlx_stack.cli.terminal import terminal
    from mlx_stack.core.doctor import summary

    doc = result.report
    terminal.print(Text(f"mlx-stack {doc['mlx_stack_version']} doctor: {doc['os']} {doc['arch']}, "
                        f"Python {doc['python']}, state folder {doc['state_folder']}"))
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column("status")
    table.add_column("check")
    table.add_column("detail", overflow="fold")
    for c in result.checks:
        table.add_row(Text(c.status, style=_STYLE.get(c.status, "")), Text(c.title), Text(c.detail))
        if c.fix and c.status in ("WARN", "FAIL"):
            table.add_row(Text(""), Text(""), Text(f"fix: {c.fix}", style="dim"))
    terminal.print(table)
    counts = summary(result.checks)  # the report's summary, counted again
    line = ", ".join(f"{counts[s]} {s}" for s in ("PASS", "WARN", "FAIL", "SKIP") if counts.get(s))
    verdict = "some checks FAILED" if counts.get("FAIL") else "nothing failed"
    terminal.print(Text(f"{line}: {verdict}"))
