"""`mlx-stack status --watch` (the dashboard's numbers live in the terminal) and `mlx-stack open`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mlx_stack.core.controls import escape_controls
from mlx_stack.core.dashboard import state_class

if TYPE_CHECKING:
    from rich.console import RenderableType

_STYLE = {"up": "green", "warn": "yellow", "down": "bold red", "other": "cyan"}
_SPARK = "▁▂▃▄▅▆▇█"
SPARK_POINTS = 24  # the last 2 minutes of tok/s at 5 s per sample


def _gb(v: float | None) -> str:
    from mlx_stack.core.units import format_bytes

    return "-" if v is None else format_bytes(v, "GB", show_unit=False)


def _ago(epoch: float | None, now: float) -> str:
    if not epoch:
        return "-"
    s = max(0, int(now - epoch))
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m ago"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m ago"
    return f"{s // 86400}d ago"


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def spark(values: list[float | None]) -> str:
    """A one-line plot (block characters) of the last values; blank where nothing ran."""
    pts = values[-SPARK_POINTS:]
    top = max((v for v in pts if v is not None), default=0.0)
    if top <= 0:
        return "".join(" " if v is None else _SPARK[0] for v in pts)
    return "".join(" " if v is None else _SPARK[min(7, int(v / top * 7.999))] for v in pts)


def render_view(view: dict[str, Any] | None, url: str) -> RenderableType:
    """The Rich renderable of one JSON view (or of a front door that does not answer)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    now = time.time()
    if view is None:
        return Text(f"the front door at {url} does not answer (is the stack up? `mlx-stack up`); "
                    "retrying…", style="bold red")
    now = float(view.get("now") or now)
    table = Table(box=None, pad_edge=False, title="tiers (live; Ctrl-C to stop)", title_justify="left")
    for col in ("tier", "state", "model", "memory / plan", "req/s", "TTFT p50", "tok/s", "tok/s (2 min)",
                "fallbacks in/out", "errors", "last restart"):
        table.add_column(col, no_wrap=col != "model")
    series = (view.get("history") or {}).get("tiers") or {}
    for t in view.get("tiers") or []:
        state = str(t.get("state", "?"))
        planned = t.get("planned_bytes")
        mem = "-" if planned is None else f"{_gb(t.get('rss_bytes'))} / {_gb(planned)} GB"
        cells = [t.get("name", "?"), state, t.get("model") or "-", mem,
                 f"{t.get('requests_per_s', 0):.2f}", _ms(t.get("ttft_p50_s")),
                 f"{t.get('tokens_per_s', 0):.1f}",
                 spark((series.get(t.get("name")) or {}).get("tokens_per_s") or []),
                 f"{t.get('fallbacks_in', 0)} / {t.get('fallbacks_out', 0)}", str(t.get("errors", 0)),
                 _ago(t.get("started_at"), now)]
        # Never parse model names or reasons as markup, nor print their control characters.
        texts = [Text(escape_controls(str(c), one_line=True)) for c in cells]
        texts[1].stylize(_STYLE[state_class(state)])
        table.add_row(*texts)
    parts: list[RenderableType] = [table]
    hw = view.get("hardware") or {}
    budget = view.get("budget") or {}
    line = f"machine: {hw.get('label') or hw.get('chip') or '-'}"
    if hw.get("memory_gb"):
        line += f", {hw['memory_gb']} GB"
    if budget:
        line += f"; budget: {_gb(budget.get('planned_bytes'))} GB planned of {_gb(budget.get('bytes'))} GB"
    parts.append(Text(line))
    events = (view.get("events") or [])[:5]
    if events:
        parts.append(Text("recent fallbacks and restarts:"))
        for e in events:
            what = f"{e.get('tier')} -> {e.get('to') or 'nothing answered'}" if e.get("kind") == "fallback" \
                else str(e.get("tier"))
            stamp = time.strftime("%H:%M:%S", time.localtime(float(e.get("at") or 0)))
            times = f" (x{e['count']})" if (e.get("count") or 1) > 1 else ""
            line = f"  {stamp} {e.get('kind')}: {what}{times}  {e.get('reason') or ''}"
            parts.append(Text(escape_controls(line, one_line=True)))
    for t in view.get("tiers") or []:
        if t.get("detail"):
            parts.append(Text(escape_controls(f"{t.get('name')}: {t['detail']}", one_line=True), style="dim"))
    return Group(*parts)


def watch(interval: float) -> None:
    """Redraw until Ctrl-C (which ends the command with exit 0)."""
    from rich.live import Live

    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import dashboard

    board = dashboard.board(paths())
    try:
        with Live(render_view(board.view(), board.url), console=terminal.out,
                  auto_refresh=False, transient=False) as live:
            while True:
                time.sleep(interval)
                live.update(render_view(board.view(), board.url), refresh=True)
    except KeyboardInterrupt:
        return


def open_page(launch: bool) -> None:
    import webbrowser

    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import dashboard

    board = dashboard.board(paths())
    url = board.url
    if board.view(timeout=3.0) is None:
        terminal.warn("the front door does not answer (or refused the key): the page will not load "
                      "until `mlx-stack up`")
    terminal.print(url)  # the URL alone on stdout; the key is never part of it
    terminal.info("log in with the stack key: `mlx-stack status --show-key`")
    if launch and not webbrowser.open(url):
        terminal.info("no browser could be started here: open the URL above yourself")
