"""launchctl and systemctl, called through one runner (tests inject a recording fake).

``Launchd`` manages a LaunchAgent in the ``gui/<uid>`` domain; ``Systemd`` a user
unit via ``systemctl --user``. Both expose the same small surface: ``load``,
``unload``, ``status``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mlx_stack.errors import ServiceError


@dataclass(frozen=True)
class RunResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], timeout: float = 30.0) -> RunResult: ...


def run_command(argv: Sequence[str], timeout: float = 30.0) -> RunResult:
    """The real runner: run ``argv``, capture its output, never raise on exit codes."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return RunResult(tuple(argv), 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return RunResult(tuple(argv), 124, "", f"{argv[0]}: timed out after {timeout:g} s")
    return RunResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True)
class AgentStatus:
    installed: bool  # the unit file exists
    loaded: bool  # launchd/systemd knows the job
    running: bool
    pid: int | None
    detail: str = ""
    last_exit: str | None = None  # the job's last exit status, as launchd/systemd word it
    raw: str = field(default="", repr=False, compare=False)  # what the manager printed (`doctor`)

    def as_dict(self) -> dict[str, object]:
        return {"installed": self.installed, "loaded": self.loaded, "running": self.running,
                "pid": self.pid, "detail": self.detail, "last_exit": self.last_exit}


def _fail(what: str, res: RunResult, hint: str) -> ServiceError:
    out = (res.stderr or res.stdout).strip().splitlines()
    tail = f": {out[-1]}" if out else ""
    return ServiceError(f"{what} failed (exit {res.returncode}){tail}", hint=hint)


class Launchd:
    """A LaunchAgent in the user's GUI domain."""

    # bootstrap answers 5 (EIO) or 37 while launchd still drains a booted-out job.
    _BUSY = (5, 37)

    def __init__(self, runner: Runner = run_command, uid: int | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, settle_timeout: float = 20.0):
        self.run = runner
        self.uid = os.getuid() if uid is None else uid
        self.sleep, self.clock, self.settle_timeout = sleep, clock, settle_timeout

    @property
    def domain(self) -> str:
        return f"gui/{self.uid}"

    def target(self, label: str) -> str:
        return f"{self.domain}/{label}"

    def commands(self, label: str, unit_file: Path) -> list[list[str]]:
        """What ``load`` runs (for --dry-run)."""
        return [["launchctl", "bootout", self.target(label)],
                ["launchctl", "enable", self.target(label)],
                ["launchctl", "bootstrap", self.domain, str(unit_file)]]

    def is_loaded(self, label: str) -> bool:
        return self.run(["launchctl", "print", self.target(label)]).returncode == 0

    def unload(self, label: str) -> bool:
        """Boot the job out and wait until launchd really forgot it (bootout is async)."""
        if not self.is_loaded(label):
            return False
        self.run(["launchctl", "bootout", self.target(label)])
        deadline = self.clock() + self.settle_timeout
        while self.is_loaded(label):
            if self.clock() >= deadline:
                raise ServiceError(f"launchd still lists {label} {self.settle_timeout:g} s after bootout",
                                   hint=f"run `launchctl bootout {self.target(label)}` and try again")
            self.sleep(0.25)
        return True

    def load(self, label: str, unit_file: Path) -> None:
        """(Re)load the agent: bootout if loaded, wait, then bootstrap (retrying while busy)."""
        self.unload(label)
        self.run(["launchctl", "enable", self.target(label)])  # undo an old `launchctl disable`
        deadline = self.clock() + self.settle_timeout
        while True:
            res = self.run(["launchctl", "bootstrap", self.domain, str(unit_file)])
            if res.returncode == 0:
                return
            if res.returncode not in self._BUSY or self.clock() >= deadline:
                raise _fail("launchctl bootstrap", res,
                            f"check the plist with `plutil -lint {unit_file}`, then run `mlx-stack install`")
            self.sleep(0.5)

    def status(self, label: str, unit_file: Path) -> AgentStatus:
        res = self.run(["launchctl", "print", self.target(label)])
        if res.returncode != 0:
            return AgentStatus(unit_file.exists(), False, False, None, "not loaded")
        state = re.search(r"^\s*state = (\S+)", res.stdout, re.M)
        pid = re.search(r"^\s*pid = (\d+)", res.stdout, re.M)
        running = state is not None and state.group(1) == "running"
        last = re.search(r"^\s*last exit (?:code|status) = (.+?)\s*$", res.stdout, re.M)
        return AgentStatus(unit_file.exists(), True, running, int(pid.group(1)) if pid else None,
                           state.group(1) if state else "", last.group(1) if last else None, res.stdout)


class Systemd:
    """A systemd user unit, managed with ``systemctl --user``."""

    def __init__(self, runner: Runner = run_command):
        self.run = runner

    @staticmethod
    def available(which: Callable[[str], str | None] = shutil.which) -> bool:
        return which("systemctl") is not None and Path("/run/systemd/system").is_dir()

    def _ctl(self, *args: str) -> RunResult:
        return self.run(["systemctl", "--user", *args])

    def commands(self, unit: str, unit_file: Path) -> list[list[str]]:
        return [["systemctl", "--user", "daemon-reload"],
                ["systemctl", "--user", "enable", unit],
                ["systemctl", "--user", "restart", unit]]

    def load(self, unit: str, unit_file: Path) -> None:
        for argv in self.commands(unit, unit_file):
            res = self.run(argv)
            if res.returncode != 0:
                raise _fail(" ".join(argv), res,
                            "is the user systemd instance running? try `systemctl --user status`; "
                            "`loginctl enable-linger $USER` keeps it running without a login")

    def unload(self, unit: str) -> bool:
        return self._ctl("disable", "--now", unit).returncode == 0

    def status(self, unit: str, unit_file: Path) -> AgentStatus:
        res = self._ctl("show", unit,
                        "--property=LoadState,ActiveState,SubState,MainPID,Result,ExecMainStatus")
        props = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
        loaded = res.returncode == 0 and props.get("LoadState") == "loaded"
        running = props.get("ActiveState") == "active"
        pid = int(props.get("MainPID", "0") or 0) or None
        detail = "/".join(p for p in (props.get("ActiveState"), props.get("SubState")) if p)
        last = None
        if props.get("ExecMainStatus") or props.get("Result"):
            last = f"{props.get('ExecMainStatus', '?')} ({props.get('Result', '?')})"
        return AgentStatus(unit_file.exists(), loaded, running, pid, detail, last, res.stdout)
