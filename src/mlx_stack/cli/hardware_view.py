"""Rendering of a hardware profile (shared by `status`, `models` and `setup`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlx_stack.core.units import gb

if TYPE_CHECKING:
    from mlx_stack.core.hardware import HardwareProfile


def hardware_rows(hw: HardwareProfile) -> list[tuple[str, str]]:
    """(field, value) pairs in display order; notes come last."""
    rows = [("machine", hw.label)]
    if hw.kind == "cpu":
        rows.append(("cpu", hw.chip))
        rows.append(("cpu cores", str(hw.cpu_cores or "unknown")))
    else:
        rows.append(("chip", f"Apple {hw.chip}" + ("" if hw.chip_known else " (not in the chip table)")))
        rows.append(("gpu cores", str(hw.gpu_cores or "unknown")))
        if hw.cpu_levels:
            rows.append(("cpu cores", " + ".join(f"{lvl.cores} {lvl.name}" for lvl in hw.cpu_levels)))
        elif hw.cpu_cores:
            rows.append(("cpu cores", str(hw.cpu_cores)))
    rows.append(("memory", gb(hw.memory_bytes)))
    bw = f"{hw.bandwidth_gbs:g} GB/s ({hw.bandwidth_source})" if hw.bandwidth_gbs else "unknown"
    rows.append(("bandwidth", bw))
    limit = hw.gpu_limit_source
    if hw.gpu_limit_bytes:
        limit = f"{gb(hw.gpu_limit_bytes)} ({hw.gpu_limit_source})"
    rows.append(("gpu memory limit", limit))
    if hw.rosetta:
        rows.append(("rosetta", "yes: this Python runs translated (x86_64)"))
    rows += [("note", n) for n in hw.notes]
    return rows


def render_hardware(hw: HardwareProfile, title: str = "Hardware") -> None:
    """Print the profile as a two-column table on stdout."""
    from rich.table import Table

    from mlx_stack.cli.terminal import terminal

    table = Table(box=None, pad_edge=False, show_header=False, title=title, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in hardware_rows(hw):
        table.add_row(key, value)
    terminal.print(table)
