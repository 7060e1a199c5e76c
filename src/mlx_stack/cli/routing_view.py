"""The routing part of `mlx-stack status`: the `auto` rules and per-tier counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlx_stack.services.routing import RoutingReport, TierLimit


def render_routing(report: RoutingReport | None) -> None:
    from rich.table import Table
    from rich.text import Text

    from mlx_stack.cli.terminal import terminal

    if report is None:
        return
    r = report.rules
    long_rule = f"longer than the chosen tier's window - {r.output_reserve_tokens} tokens"
    if r.long_prompt_tokens is not None:
        long_rule += f", or than {r.long_prompt_tokens} tokens"
    lines = [
        f"routing (model `auto`){'' if report.custom else ', defaults'}:",
        f"  with tools -> {r.tool_tier}",
        f"  prompt {long_rule} -> {r.long_tier or '(no long tier)'}",
        f"  otherwise -> {r.default_tier}",
        "  change with `mlx-stack config set routing.KEY VALUE`",
    ]
    for line in lines:
        terminal.print(Text(line))
    counts = report.counts
    tier_counts = counts["tiers"] if counts is not None else {}
    auto = counts["auto"] if counts is not None else {}
    table = Table(box=None, pad_edge=False)
    for col in ("tier", "context", "prompt limit", "requests", "auto", "fallbacks out", "fallbacks in",
                "client errors", "server errors", "tokens"):
        table.add_column(col)
    known = {t["name"] for t in report.tiers}
    extra: list[TierLimit] = [{"name": name, "context_window": None, "prompt_limit": None}
                              for name in tier_counts if name not in known]  # e.g. the cloud group
    for t in [*report.tiers, *extra]:
        c = tier_counts.get(t["name"], {})

        def n(kind: str, c: dict[str, int] = c) -> str:
            return str(c.get(kind, 0)) if report.counts is not None else "-"

        table.add_row(*(Text(x) for x in (
            t["name"], str(t["context_window"] or "?"), str(t["prompt_limit"] or "-"),
            n("requests"), str(auto.get(t["name"], 0)) if report.counts is not None else "-",
            n("fallbacks_out"), n("fallbacks_in"), n("client_errors"), n("server_errors"),
            n("generated_tokens"),
        )))
    terminal.print(table)
    if report.counts is None:
        terminal.print(Text("counts: the front door is not running"))
    for name, peer in (report.counts or {}).get("peers", {}).items():  # issue 26
        tiers = peer.get("tiers")
        served = ", ".join(str(t) for t in tiers) if isinstance(tiers, list) and tiers else "no tiers"
        state = "up" if peer.get("up") else "cooling down (not answering)"
        terminal.print(Text(f"peer {name}: {state}; serves {served}; {peer.get('outstanding', 0)} under way, "
                            f"{peer.get('served', 0)} answered (`mlx-stack peer list`)"))
