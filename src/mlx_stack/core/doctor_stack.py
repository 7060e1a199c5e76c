"""`doctor` checks of the stack itself: ports, state files, secrets, the login service
and each running service (pure; ``services.doctor`` gathers the facts)."""

from __future__ import annotations

import plistlib
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlx_stack.core.doctor import FAIL, PASS, SKIP, WARN, Check
from mlx_stack.core.units import format_bytes
from mlx_stack.json_types import as_list, as_object


@dataclass(frozen=True)
class PortFact:
    service: str
    port: int
    free: bool
    ours: bool = False  # held by that service's own running process group
    holder: str | None = None  # "nginx (pid 12)" when held by something else

    def as_dict(self) -> dict[str, object]:
        return {"service": self.service, "port": self.port, "free": self.free, "ours": self.ours,
                "holder": self.holder}


def ports(facts: Sequence[PortFact]) -> Check:
    data = {"ports": [f.as_dict() for f in facts]}
    taken = [f for f in facts if not f.free and not f.ours]
    if taken:
        detail = "; ".join(f"{f.port} ({f.service}) is held by {f.holder or 'another program'}"
                           for f in taken)
        return Check("ports", "ports", FAIL, detail,
                     "stop that program, or move the service: `mlx-stack config set litellm-port N` for the "
                     "gateway, `port:` of the tier in stack.yaml for a tier", data)
    shown = ", ".join(f"{f.port} {f.service} ({'ours' if f.ours else 'free'})" for f in facts)
    return Check("ports", "ports", PASS, shown or "no ports configured", None, data)


@dataclass(frozen=True)
class FileFact:
    name: str  # config.yaml, stack.yaml, run/standard.pid ...
    path: str
    present: bool
    error: str | None = None  # why it is unreadable or invalid
    hint: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "path": self.path, "present": self.present, "error": self.error}


def state_files(facts: Sequence[FileFact]) -> Check:
    data = {"files": [f.as_dict() for f in facts]}
    bad = [f for f in facts if f.error]
    if bad:
        return Check("state-files", "state files", FAIL, "; ".join(f"{f.error}" for f in bad),
                     bad[0].hint or "fix or delete the file named", data)
    present = [f.name for f in facts if f.present]
    return Check("state-files", "state files", PASS,
                 ("valid: " + ", ".join(present)) if present else "none yet (nothing set up)", None, data)


def secrets(dir_path: str, dir_mode: int | None, files: Mapping[str, int]) -> Check:
    """``secrets/`` must be 0700 and each key file 0600 (no group or other bits)."""
    data = {"dir": dir_path, "dir_mode": None if dir_mode is None else oct(dir_mode),
            "files": {n: oct(m) for n, m in files.items()}}
    if dir_mode is None:
        return Check("secrets", "secrets", PASS, "no keys stored yet", None, data)
    loose = ([f"{dir_path} is {dir_mode:o}"] if dir_mode & 0o077 else []) + [
        f"{name} is {mode:o}" for name, mode in files.items() if mode & 0o077]
    if loose:
        return Check("secrets", "secrets", FAIL, "readable by others: " + ", ".join(loose),
                     f"chmod 700 {dir_path} && chmod 600 {dir_path}/*", data)
    names = ", ".join(files) or "no keys"
    return Check("secrets", "secrets", PASS, f"{names}: private (0700 folder, 0600 files)", None, data)


def unit_program(kind: str, text: str) -> str | None:
    """The program a LaunchAgent plist or a systemd unit runs (its first argument)."""
    try:
        if kind == "launchd":
            plist = as_object(plistlib.loads(text.encode())) or {}
            args = as_list(plist.get("ProgramArguments"))
            return str(args[0]) if args else None
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart="))
                return argv[0] if argv else None
    except Exception:  # a hand-edited or truncated file: reported as unreadable
        return None
    return None


@dataclass(frozen=True)
class LoginFact:
    kind: str  # launchd | systemd
    unit_file: str
    unsupported: str | None = None  # why there is no service manager here
    installed: bool = False
    loaded: bool = False
    running: bool = False
    pid: int | None = None
    last_exit: str | None = None
    unit_program: str | None = None  # what the installed unit runs
    this_program: str = ""  # what `mlx-stack install` would write now
    program_exists: bool = True


def login_service(f: LoginFact) -> Check:
    data = {k: v for k, v in f.__dict__.items()}
    if f.unsupported:
        return Check("login-service", "login service", SKIP, f.unsupported, None, data)
    if not f.installed:
        state = f"{f.kind}: not installed"
        if f.loaded:
            return Check("login-service", "login service", WARN, state + ", but still loaded",
                         "`mlx-stack uninstall` to unload it, or `mlx-stack install` to reinstall", data)
        return Check("login-service", "login service", PASS,
                     state + " (optional: `mlx-stack install` keeps the stack up after login)", None, data)
    last = f"; last exit {f.last_exit}" if f.last_exit else ""
    if f.unit_program and not f.program_exists:
        return Check("login-service", "login service", FAIL,
                     f"{f.unit_file} runs {f.unit_program}, which no longer exists{last}",
                     "run `mlx-stack install` again from this installation", data)
    if not f.loaded:
        return Check("login-service", "login service", WARN, f"{f.kind}: installed, not loaded{last}",
                     "`mlx-stack install` loads it again", data)
    if not f.running:
        return Check("login-service", "login service", WARN, f"{f.kind}: loaded, not running{last}",
                     "see logs/watchdog.agent.log and `mlx-stack logs watchdog`", data)
    if f.unit_program and f.this_program and f.unit_program != f.this_program:
        return Check("login-service", "login service", WARN,
                     f"{f.kind}: running (pid {f.pid}), from another installation: {f.unit_program}",
                     "run `mlx-stack install` from the installation you use now", data)
    return Check("login-service", "login service", PASS, f"{f.kind}: loaded, running (pid {f.pid}){last}",
                 None, data)


# `status` quotes a failing service's last log lines after these; a report must not carry
# them (a log line may hold a prompt), so the doctor points at `mlx-stack logs` instead.
_LOG_MARKERS = ("process gone; last log line:", "; last log:")


def _without_log_lines(detail: object, name: str) -> object:
    if not isinstance(detail, str):
        return detail
    for marker in _LOG_MARKERS:
        if marker in detail:
            head = detail.split(marker, 1)[0] + ("process gone" if marker.startswith("process") else "")
            return f"{head} (its log: `mlx-stack logs {name}`)"
    return detail


def service(status: Mapping[str, object], rss_bytes: int | None) -> Check:
    """One service as `status` probed it (a real completion), plus its memory; log lines
    quoted by `status` are left out."""
    name, state = str(status.get("name")), str(status.get("state"))
    status = {**status, "detail": _without_log_lines(status.get("detail"), name)}
    data = {**status, "rss_bytes": rss_bytes}
    mem = f", {format_bytes(rss_bytes, 'GB', digits=2)} resident" if rss_bytes else ""
    where = f"port {status.get('port')}" + (f", pid {status.get('pid')}" if status.get("pid") else "")
    latency = f", answered in {status['latency_ms']:.0f} ms" if status.get("latency_ms") is not None else ""
    detail = f"{state} ({where}{latency}{mem})"
    if status.get("detail"):
        detail += f": {status['detail']}"
    cid, title = f"service:{name}", f"service {name}"
    if state == "healthy":
        return Check(cid, title, PASS, detail, None, data)
    if state in ("stopped", "sleeping"):  # sleeping: an on-demand tier, started when needed
        return Check(cid, title, PASS, detail, None, data)
    if state in ("degraded", "busy"):
        return Check(cid, title, WARN, detail, f"slow to answer: `mlx-stack logs {name}`", data)
    return Check(cid, title, FAIL, detail,
                 f"`mlx-stack logs {name}` shows why; `mlx-stack up --tier {name}` starts it again", data)


@dataclass(frozen=True)
class ClientFact:
    """A coding agent's config file (`mlx-stack connect`): whether it mentions this stack
    at all, and if so why it does not point at it (None: it does)."""

    client: str
    file: str
    connected: bool
    problem: str | None = None


def agent_clients(facts: Sequence[ClientFact]) -> Check:
    """Every connected client must point at this stack (WARN otherwise: the stack itself
    is fine, the client is not using it)."""
    data = {"clients": [{"client": f.client, "file": f.file, "connected": f.connected, "problem": f.problem}
                        for f in facts]}
    connected = [f for f in facts if f.connected]
    if not connected:
        return Check("agent-clients", "agent clients", SKIP,
                     "none connected (`mlx-stack connect claude|codex|opencode`)", None, data)
    wrong = [f for f in connected if f.problem]
    if wrong:
        return Check("agent-clients", "agent clients", WARN,
                     "; ".join(f"{f.client} ({f.file}): {f.problem}" for f in wrong),
                     " && ".join(f"mlx-stack connect {f.client}" for f in wrong), data)
    return Check("agent-clients", "agent clients", PASS,
                 ", ".join(f.client for f in connected) + " point at this stack", None, data)
