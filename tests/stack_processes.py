"""Find the live processes of one test stack: those whose command line names its state folder."""

from __future__ import annotations

import psutil

from mlx_stack.paths import Paths


def stack_processes(home: Paths) -> list[psutil.Process]:
    """Every non-zombie process whose command line mentions ``home``'s state folder."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and str(home.home) in " ".join(
                    proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found
