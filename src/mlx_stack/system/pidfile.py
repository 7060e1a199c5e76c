"""Pid files that survive pid recycling.

A record holds the pid, the process start time and the command line (as the kernel
reports it). A process is ours only if the pid is alive, started at the recorded
time *and* runs the recorded command line: after a reboot or a crash the pid may
belong to an unrelated program, which is then never signalled.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from mlx_stack.paths import Paths
from mlx_stack.system.fs import atomic_write

# create_time() is derived from boot time + jiffies: allow for rounding.
_START_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class PidRecord:
    """A service's pid file: which process it started, when, and with what command line."""

    service: str
    pid: int
    start_time: float  # psutil create_time(), seconds since the epoch
    cmdline: tuple[str, ...]
    port: int = 0

    def to_json(self) -> str:
        data = asdict(self)
        data["cmdline"] = list(self.cmdline)
        return json.dumps(data, indent=2) + "\n"


def pid_path(run_dir: Path, service: str) -> Path:
    return Paths.pid_file_in(run_dir, service)


def record_for(service: str, pid: int, cmdline: list[str] | tuple[str, ...], port: int = 0) -> PidRecord:
    """A record of a process just started by us (``cmdline``: what we asked to run;
    the record keeps what the kernel reports, e.g. with a script's interpreter)."""
    try:
        proc = psutil.Process(pid)
        start = proc.create_time()
        actual = tuple(proc.cmdline()) or tuple(cmdline)
    except (psutil.Error, ValueError):
        # already gone: such a record never matches a live process
        return PidRecord(service, pid, 0.0, tuple(cmdline), port)
    return PidRecord(service, pid, start, actual, port)


def cmdline_matches(recorded: tuple[str, ...], actual: tuple[str, ...]) -> bool:
    """The same command line; also when one names a script and the other adds its
    interpreter in front (``vllm-mlx serve`` vs ``python /…/vllm-mlx serve``)."""
    if not recorded or not actual:
        return False
    if recorded == actual:
        return True
    if len(recorded) == len(actual) and recorded[1:] == actual[1:] and len(recorded) > 1:
        return True  # the same program and arguments, its path spelled differently
    short, long_ = sorted((list(recorded), list(actual)), key=len)
    if len(long_) != len(short) + 1 or long_[2:] != short[1:]:
        return False
    return Path(long_[1]).name == Path(short[0]).name


def write(run_dir: Path, record: PidRecord) -> Path:
    path = pid_path(run_dir, record.service)
    atomic_write(path, record.to_json(), mode=0o600)
    return path


def read(run_dir: Path, service: str) -> PidRecord | None:
    """The record, or None when there is none. An unreadable file counts as none."""
    path = pid_path(run_dir, service)
    try:
        data = json.loads(path.read_text())
        return PidRecord(
            service=str(data["service"]),
            pid=int(data["pid"]),
            start_time=float(data["start_time"]),
            cmdline=tuple(str(a) for a in data["cmdline"]),
            port=int(data.get("port", 0)),
        )
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        # corrupt, unreadable or not UTF-8: never matches a live process
        return PidRecord(service, 0, 0.0, ())


def remove(run_dir: Path, service: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        pid_path(run_dir, service).unlink()


def is_ours(record: PidRecord) -> bool:
    """True if the recorded process is still the one we started (same start time and
    command line, not a zombie)."""
    if record.pid <= 0:
        return False
    try:
        proc = psutil.Process(record.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if abs(proc.create_time() - record.start_time) > _START_TOLERANCE_S:
            return False
        return cmdline_matches(record.cmdline, tuple(proc.cmdline()))
    except (psutil.Error, OSError):
        return False
