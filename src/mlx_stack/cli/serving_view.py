"""The serving plan in the terminal: per tier weights, KV, need, cache cap and total."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mlx_stack.core.units import format_mb

if TYPE_CHECKING:
    from rich.table import Table

    from mlx_stack.core.memory_plan import ServingProfile
    from mlx_stack.core.stack import Stack


def plan_table(profiles: Mapping[str, ServingProfile], title: str | None = None) -> Table:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, title=title, title_justify="left")
    for col in ("tier", "weights", "KV (ctx)", "need", "cache cap", "total", "Metal", "seqs", "KV cache"):
        table.add_column(col, no_wrap=True)
    for name, p in profiles.items():
        cache = format_mb(p.cache_memory_mb) if p.prefix_cache else "off"
        bits = f"{p.kv_cache_bits}-bit" if p.kv_cache_bits else "fp16"
        table.add_row(name, format_mb(p.weights_mb), f"{format_mb(p.kv_mb)} ({p.context // 1024}k)",
                      format_mb(p.need_mb), cache, format_mb(p.planned_mb), f"{p.gpu_memory_utilization:.0%}",
                      str(p.max_num_seqs), bits)
    return table


def render_plan(profiles: Mapping[str, ServingProfile], budget_mb: int | None) -> None:
    """The table, then the sum against the budget."""
    from mlx_stack.cli.terminal import terminal

    if not profiles:
        return
    terminal.print(plan_table(profiles, title="serving plan (need = weights + KV + activations + server)"))
    total = sum(p.planned_mb for p in profiles.values())
    of = f" of the {format_mb(budget_mb)} budget" if budget_mb else ""
    terminal.info(f"all tiers plan {format_mb(total)}{of} (need + prefix cache cap; "
                  "`up --dry-run` shows the flags)")


def render_stack_plan(stack: Stack) -> None:
    render_plan({t.name: t.serving for t in stack.tiers if t.serving is not None}, stack.memory_budget_mb)
