"""`up`, `down` and `status` of the whole stack.

`up` and `down` serialize on the stack lock (``host.lock(paths.lock_file, ...)``): a second concurrent
`up` waits for the first, then finds the stack running and changes nothing.
The per-service primitives they are built from (start, stop, probe one service) are
``service_control``'s; the watchdog calls those directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

from mlx_stack.core.service_state import ServiceStatus
from mlx_stack.core.stack import GATEWAY, LITELLM, Stack
from mlx_stack.errors import ConflictError, ExitCode, MlxStackError, ServiceError
from mlx_stack.paths import Paths
from mlx_stack.services import health, stack_store
from mlx_stack.services.running import base_url, running_record
from mlx_stack.services.service_control import (
    HEALTH_TIMEOUT_S,
    PROBE_TIMEOUT_S,
    check_service,
    command_for,
    ensure_startable,
    forget_stale,
    launch,
    probe_model,
    probe_service,
    services_of,
    stop_service,
    wait_healthy,
)
from mlx_stack.system import processes, secrets
from mlx_stack.system.host import Host, real
from mlx_stack.system.pidfile import PidRecord

__all__ = ["DownResult", "StatusReport", "UpResult", "down", "status", "up"]

LOCK_TIMEOUT_S = 600.0  # a concurrent `up` may be loading big models
INTERRUPT_GRACE_S = 5.0  # after Ctrl-C, SIGKILL what ignores SIGTERM this much sooner


class Interrupted(MlxStackError):
    """Ctrl-C or SIGTERM: what the command started is stopped; exit 130."""

    exit_code = ExitCode.INTERRUPTED


@dataclass
class UpResult:
    """What `up` did."""

    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    dry_run: str | None = None
    endpoint: str = ""
    seconds: float = 0.0


@dataclass
class DownResult:
    """What `down` did."""

    stopped: list[str] = field(default_factory=list)
    not_running: list[str] = field(default_factory=list)
    still_serving: dict[str, int] = field(default_factory=dict)  # service -> port that answers
    held_by: dict[str, str] = field(default_factory=dict)  # service -> who holds that port, in words

    def as_dict(self) -> dict[str, object]:
        return {
            "stopped": list(self.stopped),
            "not_running": list(self.not_running),
            "still_serving": [{"service": s, "port": port, "held_by": self.held_by.get(s, "")}
                              for s, port in self.still_serving.items()],
        }


@dataclass
class StatusReport:
    """Every service's state, the endpoint and the (masked) key."""

    configured: bool
    services: list[ServiceStatus]
    endpoint: str | None = None
    gateway_key: str | None = None  # masked unless asked for
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "configured": self.configured,
            "endpoint": self.endpoint,
            "gateway_key": self.gateway_key,
            "services": [s.as_dict() for s in self.services],
        }

    @property
    def exit_code(self) -> int:
        """LSB-style: 0 every configured service healthy (or only slow) or sleeping on
        purpose, 3 something is stopped, down, crashed or flapping, 4 nothing configured."""
        if not self.configured:
            return ExitCode.NOT_FOUND
        if any(s.state not in ("healthy", "degraded", "sleeping") for s in self.services):
            return ExitCode.STATE
        return ExitCode.OK


def endpoint(stack: Stack) -> str:
    return base_url(stack, GATEWAY) + "/v1"


def _select(stack: Stack, tiers: list[str] | None, *, all_tiers: bool = False) -> list[str]:
    """The named tiers; by default the resident ones (on-demand tiers sleep until needed),
    or every tier with ``all_tiers`` (for `down`)."""
    if not tiers:
        return stack.tier_names if all_tiers else stack.resident_tiers
    for name in tiers:
        check_service(stack, name)  # NotFoundError naming the known tiers
    return list(dict.fromkeys(tiers))


def _settings(p: Paths) -> bool:
    from mlx_stack.services import config

    return bool(config.load(p).get("auto-health-check"))


def up(
    p: Paths, tiers: list[str] | None = None, dry_run: bool = False, *,
    health_timeout: float = HEALTH_TIMEOUT_S, lock_timeout: float = LOCK_TIMEOUT_S,
    progress: Callable[[str], None] | None = None, force: bool = False, host: Host | None = None,
) -> UpResult:
    """Start the selected tiers (the resident ones by default: on-demand tiers sleep until
    the front door needs them), LiteLLM (only with a stored cloud key)
    and the front door, in parallel.

    Returns once every started service answered a real one-token completion
    (or only its health route, with ``auto-health-check`` false). ``progress``
    receives one-line messages as services become ready (from worker threads).
    The memory guard refuses (exit 5) tiers that would not fit, unless ``force``.
    ``host``: the machine (tests pass a fake).
    """
    h = real(host)
    say = progress or (lambda _msg: None)
    stack = stack_store.load(p)
    gateways = [s for s in services_of(p, stack) if s in (LITELLM, GATEWAY)]
    services = list(dict.fromkeys([*_select(stack, tiers), *gateways]))
    if dry_run:
        cmds = [command_for(p, stack, s, for_display=True) for s in services]
        from mlx_stack.core.server_cmd import render_dry_run  # `up --dry-run` only: `status` never loads it

        return UpResult(dry_run=render_dry_run(cmds, secrets.mask), endpoint=endpoint(stack))
    real_completion = _settings(p)
    start = h.monotonic()
    from mlx_stack.system import interrupt

    interrupt.cancelled.clear()  # a previous, interrupted up in this process is over
    with _locked(p, lock_timeout, say, h):
        stack = stack_store.load(p)  # may have changed while we waited
        already = [s for s in services if running_record(p, s, adopt=True, host=h) is not None]
        todo = [s for s in services if s not in already]
        if not todo:
            return UpResult(already_running=already, endpoint=endpoint(stack))
        for s in todo:
            forget_stale(p, s, host=h)  # a crashed instance's leftovers may hold its port
            ensure_startable(stack, s, host=h)  # all checked before anything starts
        from mlx_stack.services import serving_plan

        serving_plan.check_start(p, stack, todo, force=force, host=h)
        records: dict[str, PidRecord] = {}
        try:
            _launch_and_wait(p, stack, todo, records, health_timeout, real_completion, start, say, h)
        except KeyboardInterrupt:
            raise _interrupted(p, list(records), already, say, h) from None
    return UpResult(started=todo, already_running=already, endpoint=endpoint(stack),
                    seconds=h.monotonic() - start)


def _interrupted(p: Paths, launched: list[str], already: list[str],
                 say: Callable[[str], None], h: Host) -> Interrupted:
    """Ctrl-C/SIGTERM during `up`: stop what this `up` started (signals ignored meanwhile)."""
    from mlx_stack.system import interrupt

    interrupt.cancelled.set()
    with h.signals_ignored():
        if launched:
            say("interrupted: stopping what this up started: " + ", ".join(launched))
            h.in_parallel([(lambda s=s: _stop_quietly(p, s, h)) for s in launched])
    left = [s for s in already if running_record(p, s, host=h) is not None]
    message = "up interrupted" + (f"; stopped {', '.join(launched)}" if launched else "")
    message += f"; still running (started before): {', '.join(left)}" if left else "; nothing left running"
    return Interrupted(message, hint="run `mlx-stack up` again to start the stack")


def _stop_quietly(p: Paths, service: str, h: Host) -> None:
    with contextlib.suppress(ServiceError):
        stop_service(p, service, grace=INTERRUPT_GRACE_S, host=h)


def _launch_and_wait(
    p: Paths, stack: Stack, todo: list[str], records: dict[str, PidRecord], health_timeout: float,
    real_completion: bool, start: float, say: Callable[[str], None], h: Host,
) -> None:
    for s in todo:
        records[s] = launch(p, stack, s, host=h)
    deadline = h.monotonic() + health_timeout
    tiers_todo = [s for s in todo if s not in (GATEWAY, LITELLM)]

    def ready(service: str, real: bool) -> None:
        seconds = wait_healthy(p, stack, service, records[service], deadline, real_completion=real, host=h)
        what = "answered a completion" if real else "is up"
        say(f"{service} {what} after {h.monotonic() - start:.1f} s (wait {seconds:.1f} s)")

    waits: list[Callable[[], object]] = [
        (lambda s=s: ready(s, real_completion)) for s in tiers_todo
    ]
    for service in (LITELLM, GATEWAY):  # they boot while the tiers load
        if service in todo:
            waits.append(lambda s=service: ready(s, False))
    errors = [e for e in h.in_parallel([_catching(w) for w in waits]) if e is not None]
    if not errors and GATEWAY in todo and real_completion:
        # Only now can a completion go through it to a tier.
        errors = [e for e in [_catching(lambda: ready(GATEWAY, True))()] if e is not None]
    if errors:
        if len(errors) == 1:
            raise errors[0]
        raise ServiceError(
            "; ".join(e.message for e in errors),
            hint=f"see the logs in {p.logs_dir}; `mlx-stack down` stops what did start",
        )


@contextlib.contextmanager
def _locked(p: Paths, timeout: float, say: Callable[[str], None], h: Host) -> Iterator[None]:
    """The stack lock; says so when another up/down holds it and we wait."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(h.lock(p.lock_file, timeout=0, what="up/down"))
        except ConflictError:
            say("another up/down is running: waiting for it to finish")
            held.enter_context(h.lock(p.lock_file, timeout=timeout, what="up/down"))
        yield


def _catching(fn: Callable[[], object]) -> Callable[[], ServiceError | None]:
    def run() -> ServiceError | None:
        try:
            fn()
        except ServiceError as exc:
            return exc
        return None

    return run


def down(p: Paths, tiers: list[str] | None = None, grace: float = processes.GRACE_S, *,
         host: Host | None = None) -> DownResult:
    """Stop the selected tiers, or everything (gateway included) that has a pid file or
    a process marked as this stack's. A service whose port still answers afterwards is
    reported in ``still_serving``, never as stopped."""
    h = real(host)
    with h.lock(p.lock_file, timeout=LOCK_TIMEOUT_S, what="up/down"):
        stack = stack_store.load(p) if tiers else _stack_if_readable(p)
        if tiers:
            assert stack is not None
            services = _select(stack, tiers, all_tiers=True)
        else:
            found = set(h.pid_services(p.run_dir)) | h.marked_services(p.home)
            services = sorted(s for s in found if s != GATEWAY) + ([GATEWAY] if GATEWAY in found else [])
        ports_before = {s: _port_of(p, stack, s, h) for s in services}
        results = h.in_parallel([(lambda s=s: stop_service(p, s, grace, host=h)) for s in services])
    result = DownResult()
    for service, stopped in zip(services, results, strict=True):
        (result.stopped if stopped else result.not_running).append(service)
    if not tiers and stack is not None:  # the stack's own ports, though nothing of ours ran there
        for service in stack.services:
            if service not in ports_before:
                ports_before[service] = _port_of(p, stack, service, h)
    for service, port in ports_before.items():
        if port and _answers(port, h):
            result.still_serving[service] = port
            result.held_by[service] = h.port_holder(port).describe()
            for group in (result.stopped, result.not_running):
                if service in group:
                    group.remove(service)
    return result


def _stack_if_readable(p: Paths) -> Stack | None:
    """The stack, or None: a plain `down` stops what runs even with stack.yaml corrupt."""
    from mlx_stack.errors import MlxStackError

    try:
        return stack_store.load(p)
    except MlxStackError:
        return None


def _port_of(p: Paths, stack: Stack | None, service: str, h: Host) -> int:
    from mlx_stack.errors import NotFoundError
    from mlx_stack.services.running import port_of

    if stack is not None:
        try:
            return port_of(stack, service, p, host=h)
        except NotFoundError:
            pass
    record = h.read_pid(p.run_dir, service)
    return record.port if record is not None else 0


def _answers(port: int, h: Host, deadline_s: float = 2.0) -> bool:
    """True if something still listens on 127.0.0.1:port after a short grace (a socket
    in the closing process may linger for a moment)."""
    end = h.monotonic() + deadline_s
    while True:
        if not h.port_answers(port, timeout=0.5):
            return False
        if h.monotonic() >= end:
            return True
        h.sleep(0.1)


def status(p: Paths, *, show_key: bool = False, timeout: float = PROBE_TIMEOUT_S,
           stack: Stack | None = None, host: Host | None = None) -> StatusReport:
    """Every service's state, probed in parallel. No lock: it changes nothing. ``stack``:
    stack.yaml when the caller loaded it already."""
    h = real(host).one_scan()  # a look, not a change: the processes are scanned once
    start = h.monotonic()
    if stack is None:
        if not stack_store.exists(p):
            return StatusReport(configured=False, services=[])
        stack = stack_store.load(p)
    services = services_of(p, stack)
    services += [s for s in sorted(h.pid_services(p.run_dir)) if s not in services]  # removed, left running
    # The front door's completion goes to its first running tier and is that tier's look
    # too (health.Proof): three completions at once, not four. It is started first.
    proof = health.Proof(probe_model(p, stack, GATEWAY, host=h)) if GATEWAY in services else None

    def look(s: str) -> ServiceStatus:
        return probe_service(p, s, stack=stack, timeout=timeout, host=h, proof=proof)

    def besides() -> set[str]:
        """In this thread, while the probes wait: the one scan of the processes (a service
        of this state folder with neither pid file nor stack.yaml entry is found there and
        looked at after), and the modules the report needs next."""
        from mlx_stack.services import on_demand, serving_plan, watchdog_state  # noqa: F401

        return h.marked_services(p.home)

    order = sorted(services, key=lambda s: s != GATEWAY)
    *looks, marked = h.in_parallel([*((lambda s=s: look(s)) for s in order), besides])
    looked = dict(zip(order, cast("list[ServiceStatus]", looks), strict=True))
    extra = sorted(cast("set[str]", marked) - set(services))
    looked.update(zip(extra, h.in_parallel([(lambda s=s: look(s)) for s in extra]), strict=True))
    report = [looked[s] for s in [*services, *extra]]
    from mlx_stack.services import on_demand, serving_plan, watchdog_state

    report = watchdog_state.overlay(p, report, host=h)  # flapping / restart-pending, as the watchdog sees it
    report = serving_plan.measure(p, stack, report, host=h)
    report = on_demand.overlay(p, stack, report)
    key = secrets.read_secret(p, secrets.GATEWAY_KEY)
    shown = key if show_key else (secrets.mask(key) if key else None)
    return StatusReport(True, report, endpoint(stack), shown, h.monotonic() - start)

