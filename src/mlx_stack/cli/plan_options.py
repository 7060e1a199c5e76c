"""The plan flags shared by every command that estimates or recommends.

Use in a command:

    def cmd(chip: ChipOption = None, gpu_cores: GpuCoresOption = None,
            memory: MemoryOption = None, bandwidth: BandwidthOption = None): ...
        hw = resolve_hardware(chip, gpu_cores, memory, bandwidth)

Without ``--chip`` the machine is detected; ``--bandwidth`` alone then overrides the
detected bandwidth (how a Linux CPU profile gets one). ``--gpu-cores``/``--memory``
need ``--chip``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mlx_stack.core.hardware import HardwareProfile

_PANEL = "Plan for another Mac"
ChipOption = Annotated[str | None, typer.Option(
    "--chip", help='Plan for this chip instead of this machine, e.g. "M4 Max".', rich_help_panel=_PANEL)]
GpuCoresOption = Annotated[int | None, typer.Option(
    "--gpu-cores", help="GPU cores of the planned chip (binned chips differ).", rich_help_panel=_PANEL)]
MemoryOption = Annotated[str | None, typer.Option(
    "--memory", help="Unified memory of the planned Mac in GB, e.g. 128.", rich_help_panel=_PANEL)]
BandwidthOption = Annotated[float | None, typer.Option(
    "--bandwidth", help="Memory bandwidth in GB/s (for chips not in the table, or this machine).",
    rich_help_panel=_PANEL)]


def resolve_hardware(chip: str | None, gpu_cores: int | None, memory: str | None,
                     bandwidth: float | None) -> HardwareProfile:
    """The planned profile when ``--chip`` is given, else this machine's."""
    from mlx_stack.core.units import parse_memory_gb
    from mlx_stack.errors import UsageError
    from mlx_stack.services.hardware import Plan, detect, with_bandwidth

    if bandwidth is not None and not 1 <= bandwidth <= 10000:
        raise UsageError(f"invalid --bandwidth {bandwidth:g}: expected 1-10000 (GB/s)")
    if chip is None:
        given = [flag for flag, v in (("--gpu-cores", gpu_cores), ("--memory", memory)) if v is not None]
        if given:
            raise UsageError(f"{' and '.join(given)} {'need' if len(given) > 1 else 'needs'} --chip",
                             hint='plan for a Mac with e.g. --chip "M4 Max" --gpu-cores 40 --memory 128')
        return with_bandwidth(bandwidth)
    memory_gb = parse_memory_gb(memory) if memory is not None else None
    return detect(Plan(chip, gpu_cores, memory_gb, bandwidth))
