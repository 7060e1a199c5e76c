"""What says this is still the same boot of the same hardware setup (``marks``): what a
hardware profile detected earlier is kept under (``services.hardware.this_boot``)."""

from __future__ import annotations

import subprocess
import sys


def marks() -> dict[str, object]:
    """The boot time and, on a Mac, the GPU wired-memory limit (``sudo sysctl
    iogpu.wired_limit_mb=...`` changes it while the machine runs; one quick sysctl, not
    the whole detection)."""
    import psutil

    found: dict[str, object] = {"boot_time": round(psutil.boot_time())}
    if sys.platform == "darwin":
        try:
            done = subprocess.run(["sysctl", "-n", "iogpu.wired_limit_mb"], capture_output=True, text=True,
                                  timeout=5.0, check=False)
            found["iogpu.wired_limit_mb"] = done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            found["iogpu.wired_limit_mb"] = None
    return found
