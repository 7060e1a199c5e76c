"""Rich rendering of a benchmark result (tables, verdicts, the bar chart)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlx_stack.core import bench as core
from mlx_stack.core import bench_result as results

if TYPE_CHECKING:
    from mlx_stack.cli.terminal import Terminal


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render(terminal: Terminal, result: results.BenchResult) -> None:
    from rich.table import Table

    def line(text: str) -> None:
        terminal.out.print(text, markup=False)

    s = result.single
    line(f"{result.model} on {result.hardware}")
    line(
        f"{s.requests} requests ({result.iterations} x {len(result.prompts)} prompts: "
        f"{', '.join(result.prompts)}), {result.max_tokens} tokens max each, after a warm-up"
    )
    ref = result.reference
    table = Table(box=None, pad_edge=False, title=None)
    for col in ("metric", "measured", "reference", "ratio", "verdict"):
        table.add_column(col, justify="left" if col in ("metric", "verdict") else "right")
    for v in result.verdicts:
        digits = 2 if "memory" in v.metric else 1
        ratio = f"{v.ratio:.0%}" if v.ratio is not None else "-"
        table.add_row(v.metric, _num(v.measured, digits), _num(v.reference, digits), ratio, v.status)
    table.add_row("time to first token (s, median)", _num(s.ttft_median_s, 3), "-", "-", "")
    table.add_row("time to first token (s, max)", _num(s.ttft_max_s, 3), "-", "-", "")
    table.add_row("prompt / generated tokens", f"{s.prompt_tokens:,} / {s.completion_tokens:,}", "-", "-", "")
    table.add_row("total request time (s)", _num(s.total_s, 2), "-", "-", "")
    terminal.print(table)
    line(f"reference: {ref.source if ref else 'none (not in the catalog, no estimate)'}")
    line(f"thresholds: speeds {core.SPEED_RULE}; memory {core.MEMORY_RULE}")
    line("prompt tok/s: the longest prompt's tokens over its time to first token; peak memory: "
         "the larger of the server process tree's resident memory"
         + (f" ({result.peak_rss_gb:.2f} GB)" if result.peak_rss_gb is not None else "")
         + " and MLX's own peak"
         + (f" ({result.mlx_peak_gb:.2f} GB)" if result.mlx_peak_gb is not None else " (not reported here)"))

    if result.concurrency:
        levels = Table(box=None, pad_edge=False)
        for col in ("streams", "tok/s (all)", "tok/s (per stream)", "TTFT median (s)", "wall (s)"):
            levels.add_column(col, justify="right")
        for lv in result.concurrency:
            levels.add_row(str(lv.streams), _num(lv.aggregate_tps), _num(lv.per_stream_tps),
                           _num(lv.ttft_median_s, 3), _num(lv.wall_s, 2))
        line("")
        terminal.print(levels)
        line("")
        line(core.bar_chart(list(result.concurrency)))
