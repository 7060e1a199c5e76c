"""Where a service runs: the process that is it (``running_record``) and the address it
answers on (``port_of``, ``base_url``).

Read-only lookups over the pid files and the stack, for every service that asks "does it
run, and where?" (starting and stopping in ``service_control``, the memory guard in
``serving_plan``, the dashboard, routing, doctor, bench). It imports no other services
module, so asking never pulls in the code that starts processes. ``running_record`` itself
lives in :mod:`mlx_stack.system.launcher`, where the front door asks it too.
"""

from __future__ import annotations

from mlx_stack.core.stack import GATEWAY, LITELLM, Stack
from mlx_stack.paths import Paths
from mlx_stack.system.host import Host, real
from mlx_stack.system.launcher import running_record

__all__ = ["base_url", "port_of", "running_record"]


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
