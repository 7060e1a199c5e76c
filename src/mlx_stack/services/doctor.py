"""`mlx-stack doctor`: gather the facts through system/, let core.doctor judge them.

Public API:
    run(p, probe_timeout=5.0) -> DoctorResult   (checks + the redacted report document)
    machine: Machine   the OS facts; tests swap in a fake (a Mac's raw outputs on Linux)

The login service goes through ``services.install`` (its ``default_host()`` is what
tests replace), the services through ``lifecycle.status``; nothing here
re-implements a query ``system/`` already has.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform as _platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from mlx_stack import __version__
from mlx_stack.core import doctor as judge
from mlx_stack.core import doctor_report, doctor_stack
from mlx_stack.core.doctor import Check
from mlx_stack.core.doctor_stack import FileFact, LoginFact, PortFact
from mlx_stack.core.hardware import HardwareProfile, cpu_profile, parse_sysctl, profile_from_mac
from mlx_stack.core.stack import Stack
from mlx_stack.errors import MlxStackError, UnsupportedError, UsageError
from mlx_stack.json_types import JSONObject, as_list
from mlx_stack.paths import Paths
from mlx_stack.system import sysinfo
from mlx_stack.system.fs import is_present
from mlx_stack.system.service_manager import Runner, run_command

if TYPE_CHECKING:
    from mlx_stack.services.config import Config

# Environment variables whose values must never reach a report.
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENROUTER_API_KEY", "OPENAI_API_KEY",
              "ANTHROPIC_API_KEY", "LITELLM_MASTER_KEY")


class Machine:
    """The OS facts `doctor` reads, each a thin call into system/ (or the stdlib)."""

    platform: str = sys.platform

    def arch(self) -> str:
        return _platform.machine()

    def os_release(self) -> str:
        mac = _platform.mac_ver()[0]
        return f"macOS {mac}" if mac else _platform.platform()

    def is_apple_silicon(self) -> bool:
        return sysinfo.is_apple_silicon()

    def read_mac(self) -> sysinfo.MacRaw:
        return sysinfo.read_mac(full=True)

    def read_cpu(self) -> sysinfo.CpuRaw:
        return sysinfo.read_cpu()

    def mlx(self) -> sysinfo.MlxInfo:
        return sysinfo.mlx_info()

    def version(self, dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    def requires(self) -> list[str]:
        try:
            return list(metadata.requires("mlx-stack") or [])
        except metadata.PackageNotFoundError:
            return []

    def bin_dir(self) -> Path:
        return Path(sys.executable).absolute().parent  # where `up` finds vllm-mlx and litellm

    def disk_free(self, path: Path) -> int | None:
        from mlx_stack.system.hub import disk_free

        return disk_free(path) or None


machine = Machine()
runner: Runner = run_command  # how cluster hosts are asked (tests swap in a recording fake)


@dataclass
class DoctorResult:
    checks: list[Check]
    report: JSONObject  # redacted
    written_to: Path | None = None  # the --report file, once written

    @property
    def exit_code(self) -> int:
        return judge.exit_code(self.checks)

    def as_dict(self) -> JSONObject:
        """What `doctor --json` prints: the redacted report."""
        return self.report


def _hardware(m: Machine, raw: dict[str, object]) -> tuple[HardwareProfile, dict[str, str]]:
    if m.is_apple_silicon():
        mac = m.read_mac()
        raw["mac"] = asdict(mac)
        profile = profile_from_mac(mac.sysctl, ioreg_text=mac.ioreg, sp_displays_json=mac.sp_displays,
                                   sp_hardware_json=mac.sp_hardware, working_set_bytes=mac.working_set_bytes)
        return profile, parse_sysctl(mac.sysctl)
    cpu = m.read_cpu()
    raw["cpu"] = asdict(cpu)
    return cpu_profile(cpu.cpu_name, cpu.memory_bytes, cpu.cpu_cores, os_name=cpu.os_name), {}


def _environment(m: Machine, raw: dict[str, object]) -> list[Check]:
    required = judge.requirements(m.requires(), m.platform)
    versions = {name: m.version(name) for name in judge.PACKAGES}
    bin_dir = m.bin_dir()
    commands = {c: (str(bin_dir / c) if (bin_dir / c).exists() else None) for c in judge.COMMANDS}
    info = m.mlx().as_dict()
    raw["mlx"] = info
    v = sys.version_info
    return [
        judge.python((v.major, v.minor, v.micro), sys.executable, _platform.python_implementation()),
        judge.packages(versions, required, m.platform, commands),
        judge.mlx_backend(m.platform, info),
    ]


def _file(name: str, path: Path, read: Callable[[], object], hint: str | None = None) -> FileFact:
    """Load one state file with its own loader; any error is the fact."""
    if not is_present(path):
        return FileFact(name, str(path), False)
    try:
        read()
    except MlxStackError as exc:
        return FileFact(name, str(path), True, exc.message, exc.hint or hint)
    except OSError as exc:
        return FileFact(name, str(path), True, f"{path}: {exc.strerror or exc}", hint)
    except ValueError as exc:
        return FileFact(name, str(path), True, f"{path}: {exc}", hint)
    return FileFact(name, str(path), True)


def _state_files(p: Paths) -> tuple[list[FileFact], Stack | None, Config | None]:
    from mlx_stack.core.yaml_text import parse_yaml
    from mlx_stack.services import config, pulled_models, stack_store
    from mlx_stack.system import pidfile

    loaded_config: list[Config] = []
    loaded_stack: list[Stack] = []
    facts = [
        _file("config.yaml", p.config_file, lambda: loaded_config.append(config.load(p))),
        _file("stack.yaml", p.stack_file, lambda: loaded_stack.append(stack_store.load(p))),
        _file("pulled.yaml", p.pulled_file, lambda: pulled_models.load(p)),
    ]
    if not is_present(p.config_file):
        loaded_config.append(config.load(p))  # the defaults
    run_dir = p.run_dir
    for pid_file in p.pid_files():
        def read_pid(f: Path = pid_file) -> None:
            record = pidfile.read(run_dir, f.stem)
            if record is not None and record.pid <= 0:  # how pidfile marks a corrupt file
                raise ValueError("not a pid record")
        facts.append(_file(f"run/{pid_file.name}", pid_file, read_pid,
                           hint=f"delete {pid_file}: the process it named cannot be identified"))
    watchdog = p.watchdog_state_file
    facts.append(_file("run/watchdog.json", watchdog, lambda: json.loads(watchdog.read_text()),
                       hint=f"delete {watchdog}: the watchdog writes it again"))
    gen = p.generated_dir
    for f in sorted(gen.glob("*.yaml")) + sorted(gen.glob("*.json")) if gen.is_dir() else []:
        def read_generated(f: Path = f) -> None:
            text = f.read_text()
            if f.suffix == ".json":
                json.loads(text)
            else:
                parse_yaml(text, str(f), hint="")
        facts.append(_file(f"generated/{f.name}", f, read_generated,
                           hint="rendered from stack.yaml: `mlx-stack up` writes it again"))
    return facts, next(iter(loaded_stack), None), next(iter(loaded_config), None)


def _ports(p: Paths, stack: Stack | None, cfg: Config | None) -> list[PortFact]:
    from mlx_stack.core.stack import GATEWAY
    from mlx_stack.services.running import port_of, running_record
    from mlx_stack.system import ports, processes

    if stack is not None:
        wanted = [(s, port_of(stack, s)) for s in stack.services]
    elif cfg is not None:
        wanted = [(GATEWAY, int(cfg.get("litellm-port")))]
    else:
        wanted = []
    facts = []
    for service, port in wanted:
        if ports.is_free(port):
            facts.append(PortFact(service, port, True))
            continue
        record = running_record(p, service)
        holder = ports.holder(port)
        ours = record is not None and (holder.pid is None or holder.pid == record.pid
                                       or holder.pid in processes.group_members(record.pid))
        facts.append(PortFact(service, port, False, ours, None if ours else holder.describe()))
    return facts


def _login(p: Paths, raw: dict[str, object]) -> LoginFact:
    from mlx_stack.services import install

    this_program = install.program()[0]
    try:
        kind, unit_file, st = install.status(p)
    except UnsupportedError as exc:
        kind = "launchd" if install.default_host().platform == "darwin" else "systemd"
        raw["login_service"] = {"kind": kind, "unsupported": exc.message}
        return LoginFact(kind, "", unsupported=exc.message, this_program=this_program)
    text = ""
    if unit_file.is_file():
        try:
            text = unit_file.read_text()
        except OSError:
            text = ""
    program = doctor_stack.unit_program(kind, text) if text else None
    raw["login_service"] = {"kind": kind, "unit_file": str(unit_file), "unit": text,
                            "manager_output": st.raw, **st.as_dict()}
    return LoginFact(kind, str(unit_file), None, st.installed, st.loaded, st.running, st.pid, st.last_exit,
                     program, this_program, program is None or Path(program).exists())


def _services(p: Paths, stack: Stack, timeout: float, raw: dict[str, object]) -> list[Check]:
    from mlx_stack.services import lifecycle
    from mlx_stack.system.server_stats import tree_rss

    report = lifecycle.status(p, timeout=timeout, stack=stack)
    checks = []
    for s in report.services:
        rss = tree_rss(s.pid) if s.pid else None
        checks.append(doctor_stack.service(s.as_dict(), rss))
    raw["endpoint"] = report.endpoint
    return checks


def _clients(p: Paths, stack: Stack) -> Check:
    from mlx_stack.services.connect import client_states

    return doctor_stack.agent_clients([doctor_stack.ClientFact(s.client, s.file, s.connected, s.problem)
                                       for s in client_states(p, stack)])


def _secret_values(p: Paths) -> list[str]:
    from mlx_stack.system import secrets

    values = [os.environ.get(k) for k in SECRET_ENV]
    with contextlib.suppress(OSError):  # unreadable: then none of them reaches the report either
        values += [secrets.read_secret(p, name) for name in secrets.modes(p)[1]]
    return [v for v in values if v]


def _guarded(check_id: str, title: str, step: Callable[[], list[Check]]) -> list[Check]:
    """One step's checks; an unexpected error becomes a FAIL of that step, never a crash."""
    try:
        return step()
    except Exception as exc:  # doctor is what users run when things are odd: report, go on
        detail = exc.message if isinstance(exc, MlxStackError) else f"{type(exc).__name__}: {exc}"
        return [Check(check_id, title, judge.FAIL, f"could not check: {detail}",
                      "attach `mlx-stack doctor --report FILE` to a bug report")]


def run(p: Paths, *, probe_timeout: float = 5.0, report_file: Path | None = None) -> DoctorResult:
    """Every check, in a fixed order, and the redacted report; with ``report_file`` the
    report is written there too (the path is checked before any check runs)."""
    target = report_target(report_file) if report_file is not None else None
    result = _run(p, probe_timeout)
    if target is not None:
        write_report(target, result.report)
        result.written_to = target
    return result


def _cluster(stack: Stack, cfg: Config | None) -> list[Check]:
    """Each cluster tier's hosts, asked through ``runner``: reachable over ssh (BatchMode, a
    short timeout), the same Python and MLX as this Mac, the model folder there; a
    127.0.0.1/localhost host is asked here, without ssh."""
    from mlx_stack.core import cluster

    set_to = cfg.get("cluster-ssh-timeout") if cfg is not None else None
    timeout = set_to if isinstance(set_to, int) else cluster.SSH_TIMEOUT_S
    python = sys.version.split()[0]
    try:
        mlx: str | None = metadata.version("mlx")
    except metadata.PackageNotFoundError:
        mlx = None
    checks: list[Check] = []
    for tier in stack.tiers:
        if tier.cluster is None:
            continue
        facts: dict[str, cluster.HostFacts] = {}
        for h in tier.cluster.hosts:
            if h.ssh in facts:
                continue
            r = runner(cluster.probe_argv(h, sys.executable, tier.path, timeout), timeout=timeout + 10.0)
            facts[h.ssh] = cluster.read_probe(r.returncode, r.stdout, r.stderr)
        problems = cluster.host_problems(facts, python=python, mlx=mlx)
        checks.append(Check.from_dict(cluster.doctor_check(tier.name, list(facts), problems)))
    return checks


def _run(p: Paths, probe_timeout: float) -> DoctorResult:
    from mlx_stack.services.local_models import hf_cache_dir
    from mlx_stack.system import secrets

    m = machine
    started = time.monotonic()
    raw: dict[str, object] = {}
    checks: list[Check] = []

    def hardware() -> list[Check]:
        profile, sysctl = _hardware(m, raw)
        return [judge.hardware(profile, m.platform, sysctl), judge.gpu_limit(profile, sysctl),
                judge.rosetta(profile, m.platform, m.arch())]

    checks += _guarded("hardware", "hardware", hardware)
    checks += _guarded("packages", "packages", lambda: _environment(m, raw))
    try:
        files, stack, cfg = _state_files(p)
    except Exception as exc:  # e.g. a folder of the state directory we may not list
        files, stack, cfg = [FileFact("state folder", str(p.home), True, f"{type(exc).__name__}: {exc}",
                                      f"check the owner and permissions of {p.home}")], None, None
    model_dir = cfg.get("model-dir") if cfg is not None else None
    models_at = Path(model_dir).expanduser() if model_dir else hf_cache_dir()
    checks += [
        judge.disk("disk-models", "disk (models)", str(models_at), m.disk_free(models_at),
                   judge.HF_CACHE_WARN, judge.HF_CACHE_FAIL),
        judge.disk("disk-state", "disk (state folder)", str(p.home), m.disk_free(p.home),
                   judge.STATE_WARN, judge.STATE_FAIL),
        doctor_stack.state_files(files),
    ]
    checks += _guarded("ports", "ports", lambda: [doctor_stack.ports(_ports(p, stack, cfg))])
    checks += _guarded("secrets", "secrets",
                       lambda: [doctor_stack.secrets(str(p.secrets_dir), *secrets.modes(p))])
    checks += _guarded("login-service", "login service", lambda: [doctor_stack.login_service(_login(p, raw))])
    if stack is not None:
        checks += _guarded("cluster", "cluster tiers", lambda: _cluster(stack, cfg))
        checks += _guarded("services", "services", lambda: _services(p, stack, probe_timeout, raw))
        checks += _guarded("agent-clients", "agent clients", lambda: [_clients(p, stack)])
    elif not any(f.name == "stack.yaml" and f.error for f in files):
        checks.append(Check("services", "services", judge.SKIP,
                            "no stack configured yet (`mlx-stack setup`, or `setup --demo` to try)"))
    if cfg is not None:
        raw["config"] = {s.key: ("<set>" if s.value else None) if s.secret else s.value for s in cfg.all()}
    if stack is not None:
        raw["stack_yaml"] = p.stack_file.read_text()
    meta = {
        "mlx_stack_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "platform": m.platform,
        "os": m.os_release(),
        "arch": m.arch(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "package_dir": str(Path(__file__).resolve().parents[1]),
        "state_folder": str(p.home),
        "seconds": round(time.monotonic() - started, 2),
    }
    doc = doctor_report.build(checks, meta=meta, raw=raw, secrets=_secret_values(p), home=str(Path.home()))
    return DoctorResult([Check.from_dict(c) for c in as_list(doc["checks"])], doc)


def report_target(report: Path) -> Path:
    """Where ``--report FILE`` goes (absolute); UsageError before any check runs when it
    cannot be a file there."""
    target = report.expanduser().absolute()
    if target.is_dir() or not target.parent.is_dir():
        raise UsageError(f"cannot write the report to {report}",
                         hint="give a file path in an existing folder, e.g. --report ./mlx-stack-doctor.json")
    return target


def write_report(target: Path, data: JSONObject) -> None:
    """The redacted report as JSON, mode 0600; UsageError naming the file when it cannot be written."""
    from mlx_stack.system.fs import atomic_write

    try:
        atomic_write(target, json.dumps(data, indent=2, default=str) + "\n", mode=0o600)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {target}: {exc.strerror or exc}",
                         hint="choose a file in a folder you can write to") from None


__all__ = ["DoctorResult", "Machine", "machine", "report_target", "run", "write_report"]
