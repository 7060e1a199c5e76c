"""Per-service primitives: launch, wait until healthy, stop, probe.

`lifecycle` builds `up`/`down`/`status` from these, and the watchdog calls them
one service at a time (a probe's finding: ``core.service_state.ServiceStatus``). None of
them takes the stack lock: callers that change
what runs hold ``host.lock(paths.lock_file, ...)`` around them (flock is per open
file, so taking it twice in one process would deadlock). Where a service runs
(its pid record, port and URL) is asked of ``services.running``.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mlx_stack.core.service_state import ServiceState, ServiceStatus
from mlx_stack.core.stack import GATEWAY, LITELLM, Stack
from mlx_stack.errors import ConflictError, NotFoundError, ServiceError, UsageError
from mlx_stack.paths import Paths
from mlx_stack.services import health
from mlx_stack.services.running import base_url, port_of, running_record
from mlx_stack.system import identity, interrupt, pidfile, processes, secrets
from mlx_stack.system.host import Host, real

if TYPE_CHECKING:
    from mlx_stack.core.server_cmd import Command

HEALTH_TIMEOUT_S = 300.0  # from spawn to the first real completion (big models load slowly)
PROBE_TIMEOUT_S = 5.0  # one status probe
# The health rule and its constants live in services/health.py.


def cloud_key_stored(p: Paths) -> bool:
    return secrets.read_secret(p, secrets.OPENROUTER_KEY) is not None


def services_of(p: Paths, stack: Stack) -> list[str]:
    """The services this stack runs: the tiers, LiteLLM when a cloud key is stored, the front door."""
    return [*stack.tier_names, *([LITELLM] if cloud_key_stored(p) else []), GATEWAY]


def check_service(stack: Stack, service: str) -> None:
    if service not in (GATEWAY, LITELLM):
        stack.tier(service)  # NotFoundError naming the known tiers


def command_for(p: Paths, stack: Stack, service: str, *, for_display: bool = False,
                port: int | None = None) -> Command:
    """The command of one service. ``for_display`` never creates the gateway key."""
    # imported here: `status` (which probes, never launches) does not load the renderers
    from mlx_stack.core.gateway_config import MASTER_KEY_ENV
    from mlx_stack.core.server_cmd import cluster_command, gateway_command, litellm_command, tier_command

    bin_dir = Path(sys.executable).parent
    if service not in (GATEWAY, LITELLM):
        from mlx_stack.services import serving_plan  # a stack.yaml without profiles gets planned ones

        tier = serving_plan.with_profiles(p, stack).tier(service)
        if tier.cluster is not None:
            return cluster_command(tier, bin_dir, Path(sys.executable), p.cluster_hostfile(service))
        return tier_command(tier, bin_dir, p.tier_prefix_cache(service))
    key = secrets.read_secret(p, secrets.GATEWAY_KEY)
    placeholder = key is None and for_display
    if not placeholder:
        key = key or secrets.ensure_gateway_key(p)
    shown = key or "<generated at the first up>"
    if service == LITELLM:
        cmd = litellm_command(p.litellm_config_file, bin_dir, port, shown,
                              secrets.read_secret(p, secrets.OPENROUTER_KEY) or "")
    else:
        cmd = gateway_command(stack, p.routes_file, Path(sys.executable), shown)
    if placeholder:
        cmd = replace(cmd, secret_env=cmd.secret_env - {MASTER_KEY_ENV})
    return cmd


def litellm_port(p: Paths) -> int | None:
    """LiteLLM's internal port while it runs (and a cloud key is stored), else None: what
    the front door's routes file names as the cloud (``gateway_config.write_gateway_config``)."""
    if not cloud_key_stored(p):
        return None
    record = running_record(p, LITELLM)
    return record.port if record is not None else None


def ensure_startable(stack: Stack, service: str, *, host: Host | None = None) -> None:
    """Fail before anything starts: a missing model folder, or a port another program holds."""
    if service == LITELLM:
        return  # its port is chosen free at launch
    if service == GATEWAY:
        from mlx_stack.system.tls import tls_problem

        problem = tls_problem(stack.gateway.tls_cert, stack.gateway.tls_key)
        if problem is not None:
            raise UsageError(problem, hint="`mlx-stack config set gateway.tls-cert PATH` and "
                             "`gateway.tls-key PATH`, or unset both")
    if service != GATEWAY:
        tier = stack.tier(service)
        if not Path(tier.path).is_dir():
            raise NotFoundError(
                f"model folder of tier {service} not found: {tier.path}",
                hint="download it with `mlx-stack pull`, or fix the path in stack.yaml",
            )
    ensure_port_free(stack, service, host=host)


def ensure_port_free(stack: Stack, service: str, *, host: Host | None = None) -> None:
    h = real(host)
    port = port_of(stack, service, None)
    address = stack.gateway.host if service == GATEWAY else "127.0.0.1"
    if h.port_is_free(port, address):
        return
    holder = h.port_holder(port)
    raise ConflictError(
        f"port {port} (for {service}) is held by {holder.describe()}",
        hint="stop that program, or give the service another port in stack.yaml",
    )


def launch(p: Paths, stack: Stack, service: str, *, host: Host | None = None) -> pidfile.PidRecord:
    """Spawn one service (no wait) and record it; a stale pid file is replaced, never signalled."""
    from mlx_stack.services import config, gateway_config

    h = real(host)
    settings = config.load(p)
    forget_stale(p, service, host=h)
    port = None
    if service == GATEWAY:
        from mlx_stack.services import dashboard

        gateway_config.write_gateway_config(p, stack, cloud_port=litellm_port(p))
        dashboard.write_context(p, stack)  # what the front door's page shows beside its counts
    elif service == LITELLM:
        gateway_config.write_litellm_config(p, stack)
        port = h.free_port()
    else:
        cluster = stack.tier(service).cluster
        if cluster is not None:  # the hosts as mlx.launch reads them
            from mlx_stack.core.cluster import hostfile_text
            from mlx_stack.system.fs import atomic_write

            atomic_write(p.cluster_hostfile(service), hostfile_text(cluster))
    cmd = command_for(p, stack, service, port=port)
    try:
        pid = h.spawn(
            cmd.argv, log_file=p.log_file(service), env=cmd.env,
            log_max_bytes=int(settings.get("log-max-size-mb")) * 1024 * 1024,
            log_keep=int(settings.get("log-max-files")), owner=(p.home, service),
            redact_prompts=service != GATEWAY and not settings.get("log-prompts"),
        )
    except OSError as exc:  # the program is missing or not executable
        raise ServiceError(
            f"cannot start {service}: {cmd.argv[0]}: {exc.strerror or exc}",
            hint="reinstall mlx-stack (`make install`) so vllm-mlx and litellm sit next to it",
        ) from None
    record = h.record_for(service, pid, cmd.argv, cmd.port)
    h.write_pid(p.run_dir, record)
    if service == LITELLM and p.routes_file.exists():  # a running front door learns the cloud's new port
        gateway_config.write_gateway_config(p, stack, cloud_port=litellm_port(p))
    return record


def last_log_line(p: Paths, service: str) -> str | None:
    """The last non-empty line of a service's log (read from the end)."""
    path = p.log_file(service)
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            tail = fh.read().decode(errors="replace")
    except OSError:
        return None
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else None


def _failed(p: Paths, service: str, why: str) -> ServiceError:
    last = last_log_line(p, service)
    return ServiceError(
        f"{service} {why}" + (f"; last log line: {last}" if last else ""),
        hint=f"see {p.log_file(service)}; `mlx-stack down` stops what did start",
    )


def probe_model(p: Paths, stack: Stack, service: str, *, host: Host | None = None) -> str | None:
    """The model name a completion probe asks for; for the gateway, the first running tier."""
    if service == LITELLM:
        return None  # never a completion: it would cost cloud money
    if service != GATEWAY:
        tier = next((t for t in stack.tiers if t.name == service), None)
        return tier.served_model if tier is not None else service  # what its server expects
    for name in stack.fallback_order or stack.chat_tiers:
        if running_record(p, name, host=host) is not None:
            return name
    return None


def health_target(p: Paths, stack: Stack, service: str, *, record: pidfile.PidRecord | None = None,
                  completion: bool = True, host: Host | None = None) -> health.Target:
    """Where the health rule looks at ``service``: its URL (LiteLLM's port from ``record``
    when given), liveness route, the completion's model (``probe_model``; None without
    ``completion``) and, for the front door, its key."""
    if service == LITELLM and record is not None:
        url = f"http://127.0.0.1:{record.port}"
    else:
        url = base_url(stack, service, p, host=host)
    liveness = {GATEWAY: health.GATEWAY_LIVENESS, LITELLM: health.LITELLM_LIVENESS}
    route = liveness.get(service, health.TIER_LIVENESS)
    key = secrets.read_secret(p, secrets.GATEWAY_KEY) if service == GATEWAY else None
    model = probe_model(p, stack, service, host=host) if completion else None
    kind = next((t.kind for t in stack.tiers if t.name == service), "chat")
    return health.Target(service, url, route, model, key, kind)


def wait_healthy(
    p: Paths, stack: Stack, service: str, record: pidfile.PidRecord, deadline: float,
    *, real_completion: bool = True, host: Host | None = None,
) -> float:
    """Wait until the service answers (a real completion by default); return seconds taken."""
    h = real(host)
    start = h.monotonic()
    target = health_target(p, stack, service, record=record, completion=False, host=h)
    outcome, seconds = health.wait(
        target, alive=lambda: h.is_ours(record), cancelled=interrupt.cancelled.is_set, deadline=deadline,
        real_completion=real_completion, model=lambda: probe_model(p, stack, service, host=h), host=h)
    if outcome is health.Waited.READY:
        return seconds
    if outcome is health.Waited.CANCELLED:
        raise ServiceError(f"{service}: start interrupted")
    if outcome is health.Waited.EXITED:
        raise _failed(p, service, "exited while starting")
    raise _failed(p, service, f"did not answer a completion within {deadline - start:.0f} s")


def missing_ranks(stack: Stack, service: str, record: pidfile.PidRecord, *,
                  host: Host | None = None) -> str | None:
    """A cluster tier whose launcher lives on with fewer ranks than hosts (a rank exited
    cleanly: mlx.launch then waits for the others); None when whole, or not a cluster tier.
    Each rank is a child of the launcher: the server here, or the ssh to its host."""
    tier = next((t for t in stack.tiers if t.name == service), None)
    if tier is None or tier.cluster is None:
        return None
    alive = real(host).live_children(record.pid)
    if alive is None or alive >= tier.cluster.ranks:
        return None
    return f"rank gone: {alive} of {tier.cluster.ranks} ranks running"


def start_service(
    p: Paths, service: str, *, stack: Stack | None = None, wait: bool = True,
    timeout: float = HEALTH_TIMEOUT_S, force: bool = False, host: Host | None = None,
) -> pidfile.PidRecord:
    """Start one service unless it already runs; with ``wait``, until it is healthy.

    Raises NotFoundError (unknown tier), ConflictError (port held by another program,
    or not enough memory: the memory guard, skipped with ``force``), ServiceError
    (exited or never answered). Caller holds the stack lock.
    """
    from mlx_stack.services import stack_store

    h = real(host)
    stack = stack or stack_store.load(p)
    check_service(stack, service)
    existing = running_record(p, service, adopt=True, host=h)
    if existing is not None and missing_ranks(stack, service, existing, host=h) is not None:
        stop_service(p, service, host=h)  # a cluster missing a rank: the whole group goes
        existing = None
    if existing is not None:
        return existing
    forget_stale(p, service, host=h)  # a crashed instance's leftovers may hold its port
    ensure_startable(stack, service, host=h)
    if service != GATEWAY:
        from mlx_stack.services import serving_plan

        serving_plan.check_start(p, stack, [service], force=force, host=h)
    record = launch(p, stack, service, host=h)
    if wait:
        wait_healthy(p, stack, service, record, h.monotonic() + timeout, host=h)
    return record


def clear_stale(p: Paths, record: pidfile.PidRecord, grace: float = processes.GRACE_S, *,
                host: Host | None = None) -> None:
    """Forget a pid file whose process is not ours any more, stopping what the crashed
    instance left behind: only processes marked as this service of this state folder
    (a dead leader's group may hold another program's processes: never signalled)."""
    h = real(host)
    leftovers = h.find_marked(p.home, record.service)
    if leftovers:
        h.stop_marked(leftovers, grace)
    h.remove_pid(p.run_dir, record.service)


def forget_stale(p: Paths, service: str, *, host: Host | None = None) -> None:
    """Before a start: clear the pid file (and leftovers) of a crashed instance."""
    h = real(host)
    stale = h.read_pid(p.run_dir, service)
    if stale is None:
        stale = pidfile.PidRecord(service, 0, 0.0, ())
    if not h.is_ours(stale):
        clear_stale(p, stale, host=h)


def stop_service(p: Paths, service: str, grace: float = processes.GRACE_S, *,
                 host: Host | None = None) -> bool:
    """Stop one service; True if a process of ours was stopped.

    The service is the process its pid file names if start time and command line
    still match, else the one carrying this service's marker (a lost or corrupt pid
    file). A pid file whose pid now belongs to another program is removed without
    sending any signal; a crashed service's marked leftovers are stopped. The pid
    file goes only once nothing of the service is left.
    """
    h = real(host)
    record = running_record(p, service, host=h)
    if record is None:
        stale = h.read_pid(p.run_dir, service)
        clear_stale(p, stale or pidfile.PidRecord(service, 0, 0.0, ()), grace, host=h)
        return False
    # Not started by us in its own group: signal that one process only.
    leader = h.is_group_leader(record.pid)
    gone = h.stop_group(record.pid, grace) if leader else h.stop_pid(record.pid, grace)
    rest = h.find_marked(p.home, service)  # children that left the group
    if rest:
        gone = h.stop_marked(rest, grace) and gone
    if not gone:
        raise ServiceError(
            f"{service} (pid {record.pid}) did not stop after SIGKILL",
            hint="it may be stuck in the kernel; check it with `ps`",
        )
    h.remove_pid(p.run_dir, service)
    return True


def probe_service(
    p: Paths, service: str, *, stack: Stack | None = None, timeout: float = PROBE_TIMEOUT_S,
    host: Host | None = None, proof: health.Proof | None = None,
) -> ServiceStatus:
    """One service's state: healthy / degraded (slow) / down (alive, not answering) /
    crashed (its process is gone while its pid file says it should run) / stopped.
    ``proof``: the front door offers its look there, which ``proof.tier`` takes."""
    try:
        return _probe_service(p, service, stack, timeout, real(host), proof)
    finally:
        if proof is not None and service == GATEWAY:
            proof.offer(None)  # (no-op once offered) the tier waits no longer


def _probe_service(p: Paths, service: str, stack: Stack | None, timeout: float, h: Host,
                   proof: health.Proof | None) -> ServiceStatus:
    from mlx_stack.services import stack_store

    stack = stack or stack_store.load(p)
    kind = {GATEWAY: "gateway", LITELLM: "cloud-gateway"}.get(service, "tier")
    try:
        model = {GATEWAY: "front door", LITELLM: f"LiteLLM -> {stack.cloud.model}"}.get(service) \
            or stack.tier(service).model
        port = port_of(stack, service, p, host=h)
    except NotFoundError:
        model, port = None, 0
    record = h.read_pid(p.run_dir, service)
    live = running_record(p, service, host=h)  # also one found by its marker (pid file lost)
    if live is not None:
        record = live
    if record is None:
        return ServiceStatus(service, kind, ServiceState.STOPPED, port, model=model)
    port = port or record.port
    if live is None:
        last = last_log_line(p, service)
        detail = f"process gone; last log line: {last[:60]}" if last else "process gone"
        return ServiceStatus(service, kind, ServiceState.CRASHED, port, model=model, detail=detail)
    broken = missing_ranks(stack, service, live, host=h)
    if broken is not None:
        return ServiceStatus(service, kind, ServiceState.CRASHED, port, live.pid, model=model, detail=broken)
    uptime = max(0.0, h.time() - record.start_time)
    base = ServiceStatus(service, kind, ServiceState.DOWN, port, record.pid, round(uptime, 1), model)
    status = _probe_live(p, stack, service, base, model, timeout, h, proof)
    cluster = next((t.cluster for t in stack.tiers if t.name == service), None)
    if cluster is not None:  # what `status` says of a whole cluster tier
        ranks = f"{cluster.ranks} ranks ({cluster.backend}, {cluster.sharding})"
        status = replace(status, detail=f"{ranks}; {status.detail}" if status.detail else ranks)
    return _with_writer(p, service, status, h)


def _with_writer(p: Paths, service: str, status: ServiceStatus, h: Host) -> ServiceStatus:
    """A dead or stopped log writer, said in the detail (the watchdog mends it)."""
    state = h.writer_state(p.home, service)
    if state == identity.WRITER_OK:
        return status
    what = ("log writer gone: its log has stopped" if state == identity.WRITER_GONE
            else "log writer stopped (SIGSTOP): its output is being lost")
    detail = f"{status.detail}; {what}" if status.detail else what
    return replace(status, detail=detail)


def _probe_live(p: Paths, stack: Stack, service: str, base: ServiceStatus, model: str | None,
                timeout: float, h: Host, proof: health.Proof | None) -> ServiceStatus:
    """The health rule's one look (health.check) at a live service."""
    if model is None:
        return _with(base, ServiceState.DOWN, None, "not in stack.yaml any more")
    target = health_target(p, stack, service, host=h)
    seen = proof.take() if proof is not None and proof.tier == service else None
    if seen is None:
        seen = health.check(target, timeout, h)
        if proof is not None and service == GATEWAY:
            proof.offer(seen)
    if not seen.completion:  # LiteLLM, or a front door with no tier behind it
        detail = None if service == LITELLM else "no tier running behind it"
        return _with(base, seen.state, seen.result.latency_s, detail)
    if seen.state is ServiceState.DOWN:
        return _with(base, ServiceState.DOWN, None, seen.result.error)
    slow = None if seen.state is ServiceState.HEALTHY else "slow to answer"
    return _with(base, seen.state, seen.result.latency_s, slow)


def _with(s: ServiceStatus, state: ServiceState, latency_s: float | None,
          detail: str | None) -> ServiceStatus:
    ms = round(latency_s * 1000, 1) if latency_s is not None else None
    return ServiceStatus(s.name, s.kind, state, s.port, s.pid, s.uptime_s, s.model, ms, detail)
