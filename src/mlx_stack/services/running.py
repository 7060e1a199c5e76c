"""Where a service runs: the process that is it (``running_record``) and the address it
answers on (``port_of``, ``base_url``).

Read-only lookups over the pid files and the stack, for every service that asks "does it
run, and where?" (starting and stopping in ``service_control``, the memory guard in
``serving_plan``, the dashboard, routing, doctor, bench). It imports no other services
module, so asking never pulls in the code that starts processes.
"""

from __future__ import annotations

import itertools

from mlx_stack.core.stack import GATEWAY, LITELLM, Stack
from mlx_stack.paths import Paths
from mlx_stack.system import pidfile
from mlx_stack.system.host import Host, real


def running_record(p: Paths, service: str, *, adopt: bool = False,
                   host: Host | None = None) -> pidfile.PidRecord | None:
    """The pid record if that process is still the one we started.

    Without a valid pid file (lost, corrupt, stale), a live process marked as this
    service of this state folder is found by its marker; ``adopt`` rewrites the pid
    file for it (callers that change state hold the stack lock).
    """
    h = real(host)
    record = h.read_pid(p.run_dir, service)
    if record is not None and h.is_ours(record):
        return record
    found = h.marked_leader(p.home, service)
    if found is None:
        return None
    port = record.port if record is not None and record.port else _port_in(found.cmdline)
    adopted = pidfile.PidRecord(service, found.pid, found.start_time, found.cmdline, port)
    if adopt:
        h.write_pid(p.run_dir, adopted)
    return adopted


def _port_in(cmdline: tuple[str, ...]) -> int:
    """The ``--port N`` of a command line (LiteLLM's port is chosen at launch), else 0."""
    for flag, value in itertools.pairwise(cmdline):
        if flag == "--port" and value.isdigit():
            return int(value)
    return 0


def port_of(stack: Stack, service: str, p: Paths | None = None, *, host: Host | None = None) -> int:
    """The service's port: stack.yaml's, or LiteLLM's from its pid file (0 when none)."""
    if service == GATEWAY:
        return stack.gateway.port
    if service == LITELLM:
        record = real(host).read_pid(p.run_dir, LITELLM) if p is not None else None
        return record.port if record is not None else 0
    return stack.tier(service).port


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def base_url(stack: Stack, service: str, p: Paths | None = None, *, host: Host | None = None) -> str:
    """``http://host:port`` of the service, as this machine reaches it."""
    if service == GATEWAY:
        return f"{stack.gateway.scheme}://{_probe_host(stack.gateway.host)}:{stack.gateway.port}"
    return f"http://127.0.0.1:{port_of(stack, service, p, host=host)}"
