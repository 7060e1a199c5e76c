"""Is a TCP port free, and if not, which process holds it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Holder:
    pid: int | None
    name: str | None

    def describe(self) -> str:
        if self.pid is None:
            return "an unknown process (perhaps another user's)"
        return f"{self.name or 'a process'} (pid {self.pid})"


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on ``host:port`` (we could bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def holder(port: int) -> Holder:
    """The process listening on ``port`` (best effort)."""
    pid: int | None = None
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                pid = conn.pid
                if pid:
                    break
    except (psutil.AccessDenied, PermissionError):
        pid = _lsof(port)  # macOS needs root for net_connections; lsof sees our own processes
    if pid is None:
        return Holder(None, None)
    try:
        return Holder(pid, psutil.Process(pid).name())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return Holder(pid, None)


def _lsof(port: int) -> int | None:
    import shutil  # (lsof is looked for only when a port is taken)

    exe = shutil.which("lsof")
    if not exe:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        out = subprocess.run(
            [exe, "-nP", f"-iTCP:{port}", "-sTCP:LISTEN", "-t"],
            capture_output=True, text=True, timeout=5,
        ).stdout.split()
        if out:
            return int(out[0])
    return None


def free_port() -> int:
    """A port the OS considers free right now (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
