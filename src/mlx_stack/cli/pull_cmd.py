"""`mlx-stack pull MODEL`: download a model into the Hugging Face cache (or model-dir)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from mlx_stack.cli.terminal import Terminal
    from mlx_stack.services.pull import Plan


def pull(
    model: str = typer.Argument(..., metavar="MODEL", help="A catalog id or a hub repo (org/name)."),
    quant: str = typer.Option(
        None, "--quant", metavar="QUANT",
        help="int4, int6, int8 or bf16 for a catalog id (default: config default-quant).",
    ),
    force: bool = typer.Option(False, "--force", help="Download again even if the files are on disk."),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    bench: bool = typer.Option(
        False, "--bench", help="Then benchmark it here and save the result (as `bench MODEL --save`)."
    ),
) -> None:
    """Download a model (resumable; reuses files already in the cache), then record it for setup.

    Exit codes: 4 unknown model, 5 not enough disk space, 6 hub unreachable,
    offline, or a gated model without HF_TOKEN, 130 interrupted.
    """
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.core.config_schema import QUANTS
    from mlx_stack.core.units import format_bytes
    from mlx_stack.errors import ExitCode, UsageError
    from mlx_stack.paths import paths
    from mlx_stack.services import pull as pull_service
    from mlx_stack.system import hub

    p = paths()
    if quant is not None and quant not in QUANTS:
        raise UsageError(f"invalid --quant {quant!r}: expected one of {', '.join(QUANTS)}")
    if quant is not None and "/" in model:
        terminal.warn(f"--quant {quant} ignored: {model} is a hub repo, pulled as it is")
    bar = DownloadBar(terminal)
    from mlx_stack.system import interrupt

    try:
        with interrupt.signals_raise():  # SIGTERM unwinds like Ctrl-C
            result = pull_service.pull(
                p, model, quant=quant, force=force,
                on_plan=bar.start, on_progress=bar.update,
                on_offline=lambda why: terminal.warn(f"{why}; using the complete copy already on disk"),
            )
    except KeyboardInterrupt:
        bar.stop()
        terminal.error(
            f"pull of {model} interrupted: nothing was recorded",
            hint=f"files already complete are kept; run `mlx-stack pull {model}` again to resume",
        )
        hub.leave_now(ExitCode.INTERRUPTED)
        raise  # not reached
    finally:
        bar.stop()
    pulled = result.model
    if json_:
        if bench:  # added by bench (issue 7): the measurement goes into the same JSON
            from mlx_stack.cli import bench_cmd

            result = result.with_bench(bench_cmd.measure(pulled.path, save=True))
        terminal.json(result.as_dict())
        return
    terminal.success(
        f"{pulled.model} ready: {format_bytes(pulled.size_bytes)}"
        f"{', ' + pulled.quant if pulled.quant else ''} at {pulled.path}"
    )
    if bench:  # added by bench (issue 7)
        from mlx_stack.cli import bench_cmd

        bench_cmd.show(bench_cmd.measure(pulled.path, save=True))


class DownloadBar:
    """A Rich progress bar on a terminal; two plain lines otherwise."""

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self._start_bytes = 0

    def start(self, plan: Plan) -> None:
        from mlx_stack.core.units import format_bytes

        self._start_bytes = plan.present
        what = f"{plan.remote.repo_id} ({len(plan.remote.files)} files, {format_bytes(plan.size)})"
        if plan.to_fetch == 0:
            self.terminal.info(f"{what}: every file is already on disk")
            return
        reused = f", {format_bytes(plan.present)} already on disk" if plan.present else ""
        self.terminal.info(f"downloading {what}: {format_bytes(plan.to_fetch)} to fetch{reused}, "
                           f"{format_bytes(plan.free)} free")
        if not self.terminal.err.is_terminal:
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=self.terminal.err, transient=True,
        )
        self.task = self.progress.add_task(plan.remote.repo_id, total=plan.size, completed=plan.present)
        self.progress.start()

    def update(self, done: int, total: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=done, total=total)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
