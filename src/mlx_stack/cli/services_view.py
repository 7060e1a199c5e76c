"""Rendering of the services part of `mlx-stack status` (Rich table or JSON data)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlx_stack.core.service_state import ServiceState

if TYPE_CHECKING:
    from mlx_stack.services.lifecycle import StatusReport

# One style per state (tests/unit/test_service_state.py checks every member has one).
STYLE: dict[ServiceState, str] = {
    ServiceState.HEALTHY: "green", ServiceState.DEGRADED: "yellow", ServiceState.DOWN: "red",
    ServiceState.CRASHED: "bold red", ServiceState.STOPPED: "dim", ServiceState.SLEEPING: "blue",
    ServiceState.STARTING: "yellow", ServiceState.BUSY: "yellow", ServiceState.UNHEALTHY: "red",
    ServiceState.BACKOFF: "yellow", ServiceState.FLAPPING: "bold red", ServiceState.RECOVERING: "yellow",
    ServiceState.UNKNOWN: "",
}


def services_report(show_key: bool = False) -> StatusReport:
    from mlx_stack.paths import paths
    from mlx_stack.services import lifecycle

    return lifecycle.status(paths(), show_key=show_key)


def services_json(report: StatusReport) -> dict[str, object]:
    return report.as_dict()


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _memory(s: object) -> str:
    """RSS (and Metal active memory, when the server reports it) / the tier's plan."""
    rss, metal, plan = (getattr(s, k, None) for k in ("rss_bytes", "metal_bytes", "planned_bytes"))
    if plan is None:
        return "-"
    from mlx_stack.core.units import format_bytes

    used = "-" if rss is None else format_bytes(rss, "GB", show_unit=False)
    if metal is not None:
        used += f" (Metal {format_bytes(metal, 'GB', show_unit=False)})"
    return f"{used} / {format_bytes(plan, 'GB')}"


def _on_demand(s: object) -> str:
    """On-demand tiers: the idle timeout, the last use, the last cold start."""
    if getattr(s, "mode", None) != "on-demand":
        return ""
    import time

    parts = [f"on-demand, unloads after {_uptime(getattr(s, 'idle_unload_s', None))} idle"]
    used = getattr(s, "last_used", None)
    parts.append(f"last used {_uptime(max(0.0, time.time() - used))} ago" if used else "not used yet")
    cold = getattr(s, "cold_start_s", None)
    if cold is not None:
        parts.append(f"cold start {cold:.1f} s")
    return "; ".join(parts)


def render_services(report: StatusReport, show_key: bool = False) -> None:
    from rich.table import Table
    from rich.text import Text

    from mlx_stack.cli.terminal import terminal

    if not report.configured:
        terminal.info("no stack configured yet: run `mlx-stack setup` (or `mlx-stack setup --demo`)")
        return
    table = Table(box=None, pad_edge=False, title="services", title_justify="left")
    for col in ("service", "state", "pid", "port", "uptime", "model", "latency", "memory / plan", "detail"):
        table.add_column(col)
    for s in report.services:
        style = STYLE.get(s.state, "")
        cells = [
            s.name, str(s.pid) if s.pid else "-", str(s.port or "-"), _uptime(s.uptime_s),
            s.model or "-", f"{s.latency_ms:.0f} ms" if s.latency_ms is not None else "-",
            _memory(s), s.detail or _on_demand(s),
        ]
        texts = [Text(c) for c in cells]  # never parse log text as markup
        if getattr(s, "over_plan", False):
            texts[-2].stylize("bold red")
        table.add_row(texts[0], Text(s.state, style=style), *texts[1:])
    terminal.print(table)
    terminal.print(Text(f"endpoint: {report.endpoint}"))
    if report.gateway_key is None:
        terminal.print(Text("API key: not generated yet (created at the first `mlx-stack up`)"))
    elif show_key:
        terminal.print(Text(f"API key: {report.gateway_key}"))
    else:
        terminal.print(Text(f"API key: {report.gateway_key}  (reveal it: `mlx-stack status --show-key`)"))
