"""The hardware profile of this machine, or of a planned Mac (plan mode).

Public API:
    Plan(chip, gpu_cores=None, memory_gb=None, bandwidth_gbs=None)
    detect(plan: Plan | None = None) -> HardwareProfile
    with_bandwidth(bandwidth_gbs) -> HardwareProfile   (this machine, bandwidth overridden)
    plan_profile(plan) -> HardwareProfile   (pure; raises UsageError/NotFoundError)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlx_stack.core.hardware import GB, HardwareProfile, bandwidth_for, cpu_profile, default_gpu_limit
from mlx_stack.errors import MlxStackError, NotFoundError, UsageError

if TYPE_CHECKING:
    from mlx_stack.paths import Paths

HARDWARE_FILE = "hardware.json"  # in run/: this boot's detected profile (``this_boot``)


@dataclass(frozen=True)
class Plan:
    """A Mac described on the command line: ``--chip "M4 Max" --gpu-cores 40 --memory 128``."""

    chip: str
    gpu_cores: int | None = None
    memory_gb: float | None = None
    bandwidth_gbs: float | None = None


def plan_profile(plan: Plan) -> HardwareProfile:
    """Validate a plan and build its profile. Unknown chips are refused (listing the
    known ones) unless ``--bandwidth`` is given; a GPU core count that is not a bin of
    the chip is refused too (listing the bins)."""
    from mlx_stack.core import chips

    known = chips.known_chip_names()
    name = chips.normalize_chip_name(plan.chip)
    if plan.gpu_cores is not None and not 1 <= plan.gpu_cores <= 512:
        raise UsageError(f"invalid --gpu-cores {plan.gpu_cores}: expected 1-512")
    if plan.memory_gb is not None and not 1 <= plan.memory_gb <= 4096:
        raise UsageError(f"invalid --memory {plan.memory_gb:g}: expected 1-4096 (GB)")
    if plan.bandwidth_gbs is not None and not 1 <= plan.bandwidth_gbs <= 10000:
        raise UsageError(f"invalid --bandwidth {plan.bandwidth_gbs:g}: expected 1-10000 (GB/s)")
    if name is None or (name not in known and plan.bandwidth_gbs is None):
        raise NotFoundError(
            f"unknown chip {plan.chip!r}",
            hint="known chips: " + ", ".join(known)
            + " (for another chip, also pass --bandwidth GB/s and --memory GB)",
        )
    notes: list[str] = []
    bins = chips.variants(name)
    if bins and plan.gpu_cores is not None and plan.bandwidth_gbs is None and \
            chips.find_variant(name, plan.gpu_cores) is None:
        raise UsageError(
            f"{name} has no {plan.gpu_cores}-core GPU variant",
            hint=f"{name} comes with " + " or ".join(f"{v.gpu_cores}" for v in bins) + " GPU cores",
        )
    variant = chips.find_variant(name, plan.gpu_cores)
    gpu_cores = plan.gpu_cores or (variant.gpu_cores if variant else None)
    if plan.gpu_cores is None and variant is not None and len(bins) > 1:
        notes.append(f"assumed the {variant.gpu_cores}-core GPU bin (pass --gpu-cores to choose)")
    if plan.memory_gb is not None:
        memory_gb = plan.memory_gb
        if variant and int(memory_gb) not in variant.memory_options_gb:
            notes.append(f"{memory_gb:g} GB is not a listed option for this {name} "
                         f"({', '.join(map(str, variant.memory_options_gb))} GB)")
    elif variant is not None:
        memory_gb = float(max(variant.memory_options_gb))
        notes.append(f"assumed {memory_gb:g} GB, the largest option (pass --memory to choose)")
    else:
        raise UsageError(f"--memory is required for {name}", hint="e.g. --memory 64")
    if plan.bandwidth_gbs is not None:
        bandwidth, src, chip_known = plan.bandwidth_gbs, "given", name in known
    else:
        bandwidth, src, chip_known, more = bandwidth_for(name, gpu_cores)
        notes += more
    memory_bytes = int(memory_gb * 1024**3)  # Apple's "128 GB" is 128 GiB
    return HardwareProfile(
        kind="plan", chip=name, memory_bytes=memory_bytes, gpu_cores=gpu_cores,
        bandwidth_gbs=bandwidth, bandwidth_source=src,
        gpu_limit_bytes=default_gpu_limit(memory_bytes),
        gpu_limit_source="default share of memory (estimated)",
        chip_known=chip_known, notes=tuple(notes),
    )


def detect(plan: Plan | None = None) -> HardwareProfile:
    """This machine's profile, or the planned one. Never raises for odd hardware:
    unknown facts are None with a note."""
    if plan is not None:
        return plan_profile(plan)
    from mlx_stack.system import sysinfo

    if sysinfo.is_apple_silicon():
        from mlx_stack.core.hardware import profile_from_mac

        raw = sysinfo.read_mac()
        return profile_from_mac(
            raw.sysctl, ioreg_text=raw.ioreg, sp_displays_json=raw.sp_displays,
            sp_hardware_json=raw.sp_hardware, working_set_bytes=raw.working_set_bytes,
        )
    cpu = sysinfo.read_cpu()
    return cpu_profile(cpu.cpu_name, cpu.memory_bytes, cpu.cpu_cores, os_name=cpu.os_name)


def this_boot(p: Paths) -> HardwareProfile:
    """This machine's profile, detected once per boot: kept in ``run/hardware.json`` with
    the marks of the boot it was read in (``system.boot.marks``) and the mlx-stack
    version, detected again when one differs. On a Mac a full detection runs several
    queries and imports MLX (~0.3 s): `status` takes this; plans and `doctor` detect."""
    import json

    from mlx_stack import __version__
    from mlx_stack.system import boot
    from mlx_stack.system.fs import read_state_bytes

    marks = {**boot.marks(), "mlx_stack": __version__}
    path = p.run_dir / HARDWARE_FILE
    try:
        raw = read_state_bytes(path, hint="", max_bytes=64 * 1024)  # (a fifo in its place never hangs it)
        kept = json.loads(raw) if raw is not None else None
        if isinstance(kept, dict) and kept.get("marks") == marks and isinstance(kept.get("profile"), dict):
            return HardwareProfile.from_dict(kept["profile"])
    except (MlxStackError, OSError, ValueError):
        pass  # none yet, or unreadable: detect
    profile = detect()
    if not p.home.is_dir():
        return profile  # nothing set up yet: `status` creates no state folder
    with contextlib.suppress(OSError):  # a read-only state folder: detect every time
        from mlx_stack.system.fs import atomic_write

        atomic_write(path, json.dumps({"marks": marks, "profile": profile.as_dict()}))
    return profile


def with_bandwidth(bandwidth_gbs: float | None) -> HardwareProfile:
    """This machine's profile, its bandwidth replaced when one is given (``--bandwidth``
    without ``--chip``: how a Linux CPU profile gets one)."""
    from dataclasses import replace

    hw = detect()
    if bandwidth_gbs is None:
        return hw
    notes = (*hw.notes, "bandwidth given with --bandwidth")
    return replace(hw, bandwidth_gbs=bandwidth_gbs, bandwidth_source="given", notes=notes)


__all__ = ["GB", "HardwareProfile", "Plan", "detect", "plan_profile", "this_boot", "with_bandwidth"]
