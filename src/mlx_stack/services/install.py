"""Install the watchdog as a login service: a LaunchAgent on macOS, a systemd user
unit on Linux. ``uninstall`` stops the watchdog and removes the unit; the model
servers and the gateway keep running (they live in their own sessions).

The runner and the platform are module attributes so tests can swap in a fake
runner that records every launchctl/systemctl command line.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mlx_stack.core import service_units
from mlx_stack.core.service_units import UnitSpec
from mlx_stack.errors import UnsupportedError
from mlx_stack.paths import Paths
from mlx_stack.system import service_manager
from mlx_stack.system.fs import atomic_write
from mlx_stack.system.service_manager import AgentStatus, Launchd, Runner, Systemd

runner: Runner = service_manager.run_command
platform: str = sys.platform


@dataclass
class InstallPlan:
    kind: str  # "launchd" | "systemd"
    unit_file: Path
    unit_text: str
    commands: list[list[str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "unit_file": str(self.unit_file), "unit": self.unit_text,
                "commands": [" ".join(c) for c in self.commands]}


def _kind() -> str:
    if platform == "darwin":
        return "launchd"
    if platform.startswith("linux"):
        return "systemd"
    raise UnsupportedError(f"no launchd or systemd on {platform}",
                           hint="run `mlx-stack watch --daemon` from your own startup script instead")


def _require_manager(kind: str) -> Launchd | Systemd:
    if kind == "launchd":
        return Launchd(runner)
    if not Systemd.available():
        raise UnsupportedError(
            "systemd is not running here, so there is no user unit to install",
            hint="run `mlx-stack watch --daemon` from your own startup script instead",
        )
    return Systemd(runner)


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
    hf_home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    bin_dir = str(Path(sys.executable).absolute().parent)
    seen: list[str] = []
    for d in [bin_dir, *os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep),
              "/usr/bin", "/bin", "/usr/sbin", "/sbin"]:
        if d and d not in seen:
            seen.append(d)
    env = {"HF_HOME": hf_home, "PATH": os.pathsep.join(seen)}
    if os.environ.get("HF_HUB_CACHE"):
        env["HF_HUB_CACHE"] = os.environ["HF_HUB_CACHE"]
    return env


def spec(p: Paths) -> UnitSpec:
    return UnitSpec(program=program(), home=p.home, env=_env(), stdout_log=p.watchdog_agent_log)


def plan(p: Paths) -> InstallPlan:
    """The unit file and the commands ``install`` would run (no side effects)."""
    kind = _kind()
    path = unit_file(kind)
    s = spec(p)
    if kind == "launchd":
        text = service_units.render_plist(s).decode()
        cmds = Launchd(runner).commands(service_units.LABEL, path)
    else:
        text = service_units.render_systemd(s)
        cmds = Systemd(runner).commands(service_units.SYSTEMD_UNIT, path)
    return InstallPlan(kind, path, text, cmds)


def install(p: Paths) -> InstallPlan:
    """Write the unit and (re)load it; a loaded agent is booted out first and awaited."""
    pl = plan(p)
    manager = _require_manager(pl.kind)
    from mlx_stack.system.dirs import make_private_dirs

    make_private_dirs(p.logs_dir)
    atomic_write(pl.unit_file, pl.unit_text, mode=0o644)
    if isinstance(manager, Launchd):
        manager.load(service_units.LABEL, pl.unit_file)
    else:
        manager.load(service_units.SYSTEMD_UNIT, pl.unit_file)
    return pl


def status(p: Paths) -> tuple[str, Path, AgentStatus]:
    kind = _kind()
    manager = _require_manager(kind)
    path = unit_file(kind)
    name = service_units.LABEL if kind == "launchd" else service_units.SYSTEMD_UNIT
    return kind, path, manager.status(name, path)


def uninstall(p: Paths) -> tuple[Path, bool]:
    """Stop the watchdog and remove its unit; return (unit file, whether anything was there)."""
    kind = _kind()
    manager = _require_manager(kind)
    path = unit_file(kind)
    name = service_units.LABEL if kind == "launchd" else service_units.SYSTEMD_UNIT
    was_loaded = manager.unload(name)
    existed = path.exists()
    path.unlink(missing_ok=True)
    if isinstance(manager, Systemd) and existed:
        manager.run(["systemctl", "--user", "daemon-reload"])
    return path, was_loaded or existed
