"""Install the watchdog as a login service: a LaunchAgent on macOS, a systemd user
unit on Linux. ``uninstall`` stops the watchdog and removes the unit; the model
servers and the gateway keep running (they live in their own sessions).

What it runs and where it runs are one :class:`LoginHost` (the launchctl/systemctl
runner and the platform), passed as ``host=`` to every function (None: the real one,
from :func:`default_host`); tests pass one with a fake runner that records every
command line.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from mlx_stack.core import service_units
from mlx_stack.core.service_units import UnitSpec
from mlx_stack.errors import UnsupportedError
from mlx_stack.paths import Paths
from mlx_stack.system import service_manager
from mlx_stack.system.fs import atomic_write
from mlx_stack.system.service_manager import AgentStatus, Launchd, Runner, Systemd


@dataclass(frozen=True)
class LoginHost:
    """What install drives: the command runner (launchctl/systemctl) and the platform."""

    runner: Runner = service_manager.run_command
    platform: str = sys.platform

    @property
    def kind(self) -> str:
        """``launchd`` (macOS) or ``systemd`` (Linux); UnsupportedError elsewhere."""
        if self.platform == "darwin":
            return "launchd"
        if self.platform.startswith("linux"):
            return "systemd"
        raise UnsupportedError(f"no launchd or systemd on {self.platform}",
                               hint="run `mlx-stack watch --daemon` from your own startup script instead")

    def manager(self, kind: str) -> Launchd | Systemd:
        if kind == "launchd":
            return Launchd(self.runner)
        if not Systemd.available():
            raise UnsupportedError(
                "systemd is not running here, so there is no user unit to install",
                hint="run `mlx-stack watch --daemon` from your own startup script instead",
            )
        return Systemd(self.runner)


def default_host() -> LoginHost:
    """The real runner on this platform (what ``host=None`` means)."""
    return LoginHost()


@dataclass
class InstallPlan:
    kind: str  # "launchd" | "systemd"
    unit_file: Path
    unit_text: str
    commands: list[list[str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "unit_file": str(self.unit_file), "unit": self.unit_text,
                "commands": [" ".join(c) for c in self.commands]}


class InstallStatus(NamedTuple):
    """`install --status`: which manager, its unit file, and what it says of the agent."""

    kind: str  # "launchd" | "systemd"
    unit_file: Path
    agent: AgentStatus

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "unit_file": str(self.unit_file), **self.agent.as_dict()}


class Uninstalled(NamedTuple):
    """`uninstall`: the unit file, and whether anything was there (loaded or on disk)."""

    unit_file: Path
    removed: bool

    def as_dict(self) -> dict[str, object]:
        return {"unit_file": str(self.unit_file), "removed": self.removed}


def unit_file(kind: str) -> Path:
    if kind == "launchd":
        return Path.home() / "Library" / "LaunchAgents" / f"{service_units.LABEL}.plist"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user" / service_units.SYSTEMD_UNIT


def program() -> tuple[str, ...]:
    """The absolute argv of this installation's ``mlx-stack watch`` (no symlinks resolved:
    a venv's python is a symlink whose target would lose the venv)."""
    exe = Path(sys.executable).absolute()
    script = exe.parent / "mlx-stack"
    base = (str(script),) if script.exists() else (str(exe), "-m", "mlx_stack")
    # --standby: if a watchdog already runs (started by hand), wait and take over when it exits.
    return (*base, "watch", "--standby")


def _env() -> dict[str, str]:
    from mlx_stack.system import hub

    bin_dir = str(Path(sys.executable).absolute().parent)
    seen: list[str] = []
    for d in [bin_dir, *os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep),
              "/usr/bin", "/bin", "/usr/sbin", "/sbin"]:
        if d and d not in seen:
            seen.append(d)
    hf = hub.service_env()  # HF_HOME (and HF_HUB_CACHE): the cache this shell uses
    return {"HF_HOME": hf.pop("HF_HOME"), "PATH": os.pathsep.join(seen), **hf}


def spec(p: Paths) -> UnitSpec:
    return UnitSpec(program=program(), home=p.home, env=_env(), stdout_log=p.watchdog_agent_log)


def plan(p: Paths, host: LoginHost | None = None) -> InstallPlan:
    """The unit file and the commands ``install`` would run (no side effects)."""
    host = host or default_host()
    kind = host.kind
    path = unit_file(kind)
    s = spec(p)
    if kind == "launchd":
        text = service_units.render_plist(s).decode()
        cmds = Launchd(host.runner).commands(service_units.LABEL, path)
    else:
        text = service_units.render_systemd(s)
        cmds = Systemd(host.runner).commands(service_units.SYSTEMD_UNIT, path)
    return InstallPlan(kind, path, text, cmds)


def install(p: Paths, host: LoginHost | None = None) -> InstallPlan:
    """Write the unit and (re)load it; a loaded agent is booted out first and awaited."""
    host = host or default_host()
    pl = plan(p, host)
    manager = host.manager(pl.kind)
    from mlx_stack.system.dirs import make_private_dirs

    make_private_dirs(p.logs_dir)
    atomic_write(pl.unit_file, pl.unit_text, mode=0o644)
    if isinstance(manager, Launchd):
        manager.load(service_units.LABEL, pl.unit_file)
    else:
        manager.load(service_units.SYSTEMD_UNIT, pl.unit_file)
    return pl


def status(p: Paths, host: LoginHost | None = None) -> InstallStatus:
    host = host or default_host()
    kind = host.kind
    manager = host.manager(kind)
    path = unit_file(kind)
    name = service_units.LABEL if kind == "launchd" else service_units.SYSTEMD_UNIT
    return InstallStatus(kind, path, manager.status(name, path))


def uninstall(p: Paths, host: LoginHost | None = None) -> Uninstalled:
    """Stop the watchdog and remove its unit; return the unit file and whether anything was there."""
    host = host or default_host()
    kind = host.kind
    manager = host.manager(kind)
    path = unit_file(kind)
    name = service_units.LABEL if kind == "launchd" else service_units.SYSTEMD_UNIT
    was_loaded = manager.unload(name)
    existed = path.exists()
    path.unlink(missing_ok=True)
    if isinstance(manager, Systemd) and existed:
        manager.run(["systemctl", "--user", "daemon-reload"])
    return Uninstalled(path, was_loaded or existed)
