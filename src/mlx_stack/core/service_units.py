"""Rendering the always-on service files (pure): a launchd LaunchAgent plist and a
systemd user unit, both running ``mlx-stack watch``.

Rendering is separate from writing (services/install.py writes and loads them).
"""

from __future__ import annotations

import plistlib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from mlx_stack.errors import UsageError
from mlx_stack.json_types import as_list, as_object

LABEL = "io.github.mlx-stack.watchdog"  # reverse-DNS launchd label
SYSTEMD_UNIT = "mlx-stack-watchdog.service"
THROTTLE_S = 10  # launchd/systemd wait this long between two starts of the watchdog


@dataclass(frozen=True)
class UnitSpec:
    """What the watchdog service runs and with which environment."""

    program: tuple[str, ...]  # absolute argv, e.g. (/.../.venv/bin/mlx-stack, watch, --standby)
    home: Path  # MLX_STACK_HOME
    env: dict[str, str] = field(default_factory=dict[str, str])  # HF_HOME, PATH, ...
    stdout_log: Path | None = None  # what the watchdog prints before its own log is open
    working_dir: Path | None = None
    throttle_s: int = THROTTLE_S
    label: str = LABEL

    def environment(self) -> dict[str, str]:
        return {"MLX_STACK_HOME": str(self.home), **self.env}


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_spec(spec: UnitSpec) -> None:
    """Refuse what could break a service file or add lines to it: a control or line
    separator character (a newline above all) in any path, argument or variable, or an
    odd variable name."""
    fields: list[tuple[str, str]] = [("program argument", a) for a in spec.program]
    fields += [(f"environment variable {k}", v) for k, v in spec.environment().items()]
    fields += [("working directory", str(spec.working_dir or spec.home))]
    if spec.stdout_log is not None:
        fields.append(("log file", str(spec.stdout_log)))
    for what, value in fields:
        bad = next((c for c in value if not c.isprintable()), None)  # \n, \r, NEL, U+2028...
        if bad is not None:
            raise UsageError(
                f"cannot write the service file: the {what} holds a control character "
                f"({bad!r}): {value[:80]!r}",
                hint="use paths without newlines or control characters "
                "(MLX_STACK_HOME, HF_HOME and the install location)",
            )
    for name in spec.environment():
        if not _ENV_NAME.fullmatch(name):
            raise UsageError(f"cannot write the service file: bad environment variable name {name[:40]!r}",
                             hint="names are letters, digits and _")


def plist_dict(spec: UnitSpec) -> dict[str, object]:
    """The LaunchAgent as a dict, keys as launchd.plist(5) names them."""
    check_spec(spec)
    data: dict[str, object] = {
        "Label": spec.label,
        "ProgramArguments": list(spec.program),
        "RunAtLoad": True,  # start at login / at load
        "KeepAlive": True,  # launchd restarts the watchdog whenever it exits
        "ThrottleInterval": spec.throttle_s,
        # Services run in their own sessions; never let launchd kill them with us.
        "AbandonProcessGroup": True,
        "ProcessType": "Interactive",  # no background throttling of the supervisor
        "EnvironmentVariables": spec.environment(),
        "WorkingDirectory": str(spec.working_dir or spec.home),
    }
    if spec.stdout_log is not None:
        data["StandardOutPath"] = str(spec.stdout_log)
        data["StandardErrorPath"] = str(spec.stdout_log)
    return data


def render_plist(spec: UnitSpec) -> bytes:
    """The LaunchAgent plist (XML), validated by reading it back with plistlib."""
    raw = plistlib.dumps(plist_dict(spec), fmt=plistlib.FMT_XML, sort_keys=False)
    validate_plist(raw)
    return raw


def validate_plist(raw: bytes) -> dict[str, object]:
    """Parse ``raw`` and check the keys launchd needs; raise ValueError if wrong."""
    data = as_object(plistlib.loads(raw))
    if data is None:
        raise ValueError("plist root is not a dictionary")
    label = data.get("Label")
    if not isinstance(label, str) or not label:
        raise ValueError("plist has no Label")
    args = as_list(data.get("ProgramArguments"))
    if not args or not all(isinstance(a, str) for a in args):
        raise ValueError("plist ProgramArguments must be a non-empty list of strings")
    if not str(args[0]).startswith("/"):
        raise ValueError(f"plist program {args[0]!r} is not an absolute path")
    env = as_object(data.get("EnvironmentVariables", {}))
    if env is None or not all(isinstance(v, str) for v in env.values()):
        raise ValueError("plist EnvironmentVariables must map names to strings")
    return data


def _systemd_quote(arg: str) -> str:
    # systemd splits ExecStart like a shell (quotes, backslashes); '%' and '$' are its own specifiers.
    return shlex.quote(arg.replace("%", "%%").replace("$", "$$"))


def _env_line(name: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{name}={escaped}"'


def _systemd_path(path: object) -> str:
    # A path setting expands specifiers ('%h'...): a literal '%' is '%%'.
    return str(path).replace("%", "%%")


def render_systemd(spec: UnitSpec) -> str:
    """The systemd user unit (``~/.config/systemd/user/mlx-stack-watchdog.service``)."""
    check_spec(spec)
    lines = [
        "[Unit]",
        "Description=mlx-stack watchdog (keeps the local LLM stack running)",
        "After=network.target",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(_systemd_quote(a) for a in spec.program),
        "Restart=always",
        f"RestartSec={spec.throttle_s}",
        # Stop only the watchdog itself: services it started must survive `uninstall`.
        "KillMode=process",
        f"WorkingDirectory={_systemd_path(spec.working_dir or spec.home)}",
    ]
    lines += [_env_line(k, v) for k, v in spec.environment().items()]
    if spec.stdout_log is not None:
        log = _systemd_path(spec.stdout_log)
        lines += [f"StandardOutput=append:{log}", f"StandardError=append:{log}"]
    lines += ["", "[Install]", "WantedBy=default.target", ""]
    return "\n".join(lines)
