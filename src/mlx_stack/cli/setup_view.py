"""What `setup` shows and asks on the terminal (the SetupUI of services.setup, with Rich)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlx_stack.cli.pull_cmd import DownloadBar
    from mlx_stack.cli.terminal import Terminal
    from mlx_stack.core.hardware import HardwareProfile
    from mlx_stack.core.memory_plan import ServingProfile
    from mlx_stack.core.scoring import Recommendation
    from mlx_stack.core.stack_change import SetupFlags
    from mlx_stack.paths import Paths
    from mlx_stack.services.pull import Plan
    from mlx_stack.services.setup import SetupResult


class TerminalSetupUI:
    """Rich prompts on stderr when ``interactive``; otherwise the defaults, silently."""

    def __init__(self, terminal: Terminal, *, interactive: bool) -> None:
        self.terminal = terminal
        self.interactive = interactive
        self._bar: DownloadBar | None = None

    def say(self, message: str) -> None:
        self.terminal.info(message)

    def hardware(self, profile: HardwareProfile) -> None:
        from mlx_stack.cli.hardware_view import hardware_rows

        self.terminal.info("This machine:")
        for key, value in hardware_rows(profile):
            self.terminal.info(f"  {key:<17} {value}")

    def recommendation(self, rec: Recommendation, profiles: Mapping[str, ServingProfile]) -> None:
        from mlx_stack.core.units import gb

        self.terminal.info(f"Recommended ({rec.intent}; budget {rec.budget_reason}; "
                           f"the tiers use {gb(rec.total_memory_bytes)}):")
        for t in rec.tiers:
            speed = "speed unknown" if t.decode_tok_s is None else f"~{t.decode_tok_s:.0f} tok/s"
            kind = "estimated" if t.estimated else "measured"
            memory = gb(t.memory_bytes)
            self.terminal.info(f"  {t.name:<9} {t.entry.id} {t.quant}  {speed}, {memory} ({kind})")
            self.terminal.info(f"  {'':<9} why: {t.reason}")
        if rec.tiers:
            from mlx_stack.cli.serving_view import render_plan
            from mlx_stack.core.memory_plan import MB

            render_plan(profiles, rec.budget_bytes // MB)
        for r in rec.retrieval:
            self.terminal.info(f"  {r.name:<9} {r.entry.id} {r.quant}  {r.entry.kind}, {gb(r.memory_bytes)} "
                               f"(estimated; license {r.entry.license})")
            self.terminal.info(f"  {'':<9} why: {r.reason}")
        for d in rec.dropped:
            self.terminal.warn(f"tier {d.name} dropped: {d.reason}")
        for note in rec.notes:
            self.terminal.warn(note)

    def ask_intent(self, default: str) -> str:
        from rich.prompt import Prompt

        return Prompt.ask("Intent", choices=["agent", "balanced", "agent-fleet"], default=default,
                          console=self.terminal.err)

    def ask_budget_pct(self, default: int) -> int:
        from rich.prompt import IntPrompt

        while True:
            value = IntPrompt.ask("Share of memory for the models, % (10-90)", default=default,
                                  console=self.terminal.err)
            if 10 <= value <= 90:
                return value
            self.terminal.warn("choose a whole number from 10 to 90")

    def confirm(self, question: str) -> bool:
        from rich.prompt import Confirm

        return Confirm.ask(question, default=True, console=self.terminal.err)

    def pull_started(self, plan: Plan) -> None:
        from mlx_stack.cli.pull_cmd import DownloadBar

        self._bar = bar = DownloadBar(self.terminal)
        bar.start(plan)

    def pull_progress(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(done, total)

    def pull_finished(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def run_setup(flags: SetupFlags) -> None:
    """The non-demo `setup`: run the service, explain the outcome, keep Ctrl-C tidy."""
    import sys

    from mlx_stack.cli.terminal import terminal
    from mlx_stack.errors import ExitCode, MlxStackError
    from mlx_stack.paths import paths
    from mlx_stack.services import setup as setup_service
    from mlx_stack.system import hub

    p = paths()
    before = setup_service.stack_text(p)
    interactive = bool(sys.stdin is not None and sys.stdin.isatty()) and not flags.accept_defaults
    ui = TerminalSetupUI(terminal, interactive=interactive)
    from mlx_stack.system import interrupt

    try:
        with interrupt.signals_raise():  # SIGTERM unwinds like Ctrl-C
            result = setup_service.run(p, flags, ui)
    except setup_service.SetupCancelled:
        terminal.info("nothing was changed")
        return
    except KeyboardInterrupt:
        ui.pull_finished()
        terminal.error("setup interrupted", hint=setup_service.resume_hint(p, before, resume=True))
        hub.leave_now(ExitCode.INTERRUPTED)
        raise  # not reached
    except MlxStackError as exc:
        ui.pull_finished()
        if exc.exit_code != ExitCode.USAGE:
            extra = setup_service.resume_hint(p, before, resume=exc.exit_code == ExitCode.NETWORK)
            exc.hint = f"{exc.hint}; {extra}" if exc.hint else extra
        raise
    _report(terminal, p, result, started=not flags.no_start)


def _report(terminal: Terminal, p: Paths, result: SetupResult, *, started: bool) -> None:
    d = result.applied.diff
    for t in result.stack.tiers:
        mark = " (new)" if t.name in d.added else " (changed)" if t.name in d.changed else ""
        terminal.info(f"  {t.name:<9} {t.model}  port {t.port}{mark}")
    for name in d.removed:
        terminal.info(f"  {name:<9} removed")
    from mlx_stack.cli.serving_view import render_stack_plan

    render_stack_plan(result.stack)
    terminal.success(f"wrote {p.stack_file}")
    if not started:
        terminal.info("start it with `mlx-stack up`")
        return
    if result.applied.live:
        kept = ", ".join(d.unchanged)
        terminal.success("stack changed in place" + (f"; {kept} kept serving" if kept else "")
                         + f"; gateway {result.applied.gateway}")
    if result.up_started:
        terminal.success(f"started {', '.join(result.up_started)}")
    terminal.info(f"endpoint: {result.endpoint}  (API key: `mlx-stack status --show-key`)")
