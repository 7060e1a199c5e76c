"""Run the hardware queries (macOS: sysctl, ioreg, system_profiler; Linux: psutil).

Only collects raw text; ``core.hardware`` parses it. Every command has a timeout and
a failure yields an empty string, so a missing tool never breaks `status`.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

# One sysctl call per name: an unknown one (iogpu.wired_limit_mb on older macOS,
# sysctl.proc_translated on some) must not hide the others. "hw" prints the whole node,
# hw.memsize and every hw.perflevelN.* included.
SYSCTL_NAMES = ("hw", "machdep.cpu.brand_string", "sysctl.proc_translated", "iogpu.wired_limit_mb")


@dataclass(frozen=True)
class MacRaw:
    sysctl: str
    ioreg: str
    sp_displays: str
    sp_hardware: str
    working_set_bytes: int | None


@dataclass(frozen=True)
class CpuRaw:
    cpu_name: str
    memory_bytes: int
    cpu_cores: int | None
    os_name: str


def is_apple_silicon() -> bool:
    """macOS on an Apple chip (also true for an x86_64 Python under Rosetta)."""
    if sys.platform != "darwin":
        return False
    import platform

    if platform.machine() == "arm64":
        return True
    return _run(["sysctl", "-n", "sysctl.proc_translated"]).strip() == "1"


def _run(args: list[str], timeout: float = 5.0) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout


def _metal_working_set() -> int | None:
    """Metal's recommended working set (follows iogpu.wired_limit_mb), via MLX."""
    try:
        import mlx.core as mx

        if not mx.metal.is_available():
            return None
        device_info = getattr(mx, "device_info", None) or mx.metal.device_info  # newer MLX moved it
        info = device_info()
        value = info.get("max_recommended_working_set_size")
        return int(value) if value else None
    except Exception:  # MLX missing or no Metal: the parser falls back to a default
        return None


def read_mac(full: bool = False) -> MacRaw:
    """Run the macOS queries (system_profiler only when the fast ones lack an answer,
    or always with ``full``: `doctor` reports every raw output)."""
    text = "".join(_run(["sysctl", name]) for name in SYSCTL_NAMES)
    ioreg = _run(["ioreg", "-rc", "AGXAccelerator", "-d1"])
    displays = "" if '"gpu-core-count"' in ioreg and not full else _run(
        ["system_profiler", "SPDisplaysDataType", "-json"], timeout=15.0
    )
    hardware = "" if "machdep.cpu.brand_string" in text and not full else _run(
        ["system_profiler", "SPHardwareDataType", "-json"], timeout=15.0
    )
    return MacRaw(text, ioreg, displays, hardware, _metal_working_set())


@dataclass(frozen=True)
class MlxInfo:
    """What MLX itself says here: importable, Metal or not, its default device."""

    imported: bool
    error: str | None = None
    metal: bool | None = None
    default_device: str | None = None
    device_info: dict[str, object] | None = None

    def as_dict(self) -> dict[str, object]:
        return {"imported": self.imported, "error": self.error, "metal": self.metal,
                "default_device": self.default_device, "device_info": self.device_info}


def mlx_info() -> MlxInfo:
    """Import MLX and ask it (slow: ~0.3 s; only `doctor` calls this)."""
    try:
        import mlx.core as mx
    except Exception as exc:  # not installed, or a wheel for another platform
        return MlxInfo(False, f"{type(exc).__name__}: {exc}")
    try:
        metal = bool(mx.metal.is_available())
        info: dict[str, object] | None = None
        if metal:
            device_info = getattr(mx, "device_info", None) or mx.metal.device_info
            info = {k: v if isinstance(v, int | float | str | bool) else str(v)
                    for k, v in cast(dict[str, object], dict(device_info())).items()}
        return MlxInfo(True, None, metal, str(mx.default_device()), info)
    except Exception as exc:
        return MlxInfo(True, f"{type(exc).__name__}: {exc}")


def _linux_cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def read_cpu() -> CpuRaw:
    """A CPU profile of a non-Mac machine."""
    import platform

    import psutil

    names = {"linux": "Linux", "darwin": "macOS (Intel)"}
    os_name = names.get(sys.platform) or platform.system() or sys.platform
    return CpuRaw(
        _linux_cpu_name(), int(psutil.virtual_memory().total), psutil.cpu_count(logical=False), os_name
    )
