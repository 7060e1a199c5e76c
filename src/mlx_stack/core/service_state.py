"""Every state a service can show, in `status`, `status --watch` and the dashboard.

One vocabulary: the probes of `status` (healthy / degraded / down / crashed / stopped),
an on-demand tier put to sleep on purpose (sleeping), the watchdog's view laid over them
(starting, busy, unhealthy, backoff, flapping: ``from_watchdog``), and the front door's
own word for an upstream that answers again while it cools down (recovering).
The values are the strings of the JSON output; a StrEnum member is such a string.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlx_stack.core.watchdog import State


class ServiceState(StrEnum):
    HEALTHY = "healthy"  # answered a real completion (or its liveness route) in time
    DEGRADED = "degraded"  # answered, but slower than the health rule's limit
    DOWN = "down"  # its process runs but it does not answer
    CRASHED = "crashed"  # its pid file says it should run; its process is gone
    STOPPED = "stopped"  # not running, not wanted
    SLEEPING = "sleeping"  # an on-demand tier not running on purpose (started when needed)
    STARTING = "starting"  # watchdog: started, no successful probe yet
    BUSY = "busy"  # watchdog: probe failed but the server is visibly working
    UNHEALTHY = "unhealthy"  # watchdog: probe failed with no sign of progress
    BACKOFF = "backoff"  # watchdog: failed, waiting before the next start
    FLAPPING = "flapping"  # watchdog: failed too often, left alone for a cool-down
    RECOVERING = "recovering"  # front door: answers again, back in rotation in a moment
    UNKNOWN = "unknown"  # nothing could be learnt (shown neutral)


def from_watchdog(state: State) -> ServiceState:
    """The service state a watchdog record's state shows as: the same word (every watchdog
    state is one of these; ``test_service_state`` holds them to it)."""
    return ServiceState(state.value)


def parse(text: object) -> ServiceState | None:
    """A state string read back from a file (the watchdog's state file), or None."""
    try:
        return ServiceState(str(text))
    except ValueError:
        return None


# How the status table and the dashboard colour each state: one of up / warn / down / other.
UP: frozenset[ServiceState] = frozenset({ServiceState.HEALTHY})
WARN: frozenset[ServiceState] = frozenset({
    ServiceState.DEGRADED, ServiceState.STARTING, ServiceState.SLEEPING, ServiceState.RECOVERING,
    ServiceState.BACKOFF, ServiceState.BUSY, ServiceState.UNKNOWN,
})
DOWN: frozenset[ServiceState] = frozenset({
    ServiceState.DOWN, ServiceState.CRASHED, ServiceState.STOPPED, ServiceState.FLAPPING,
    ServiceState.UNHEALTHY,
})


@dataclass(frozen=True)
class ServiceStatus:
    """One service's row in `status` (and the watchdog's view of it)."""

    name: str
    kind: str  # "tier" | "gateway" (the front door) | "cloud-gateway" (LiteLLM)
    state: ServiceState  # healthy | degraded | down | crashed | stopped; sleeping, flapping (overlays)
    port: int
    pid: int | None = None
    uptime_s: float | None = None
    model: str | None = None  # the real model id behind a tier
    latency_ms: float | None = None
    detail: str | None = None
    # Memory (tiers, `status`): measured RSS of its processes, the Metal active memory the
    # server reports (macOS), and its serving profile's plan (need + cache cap).
    rss_bytes: int | None = None
    metal_bytes: int | None = None
    planned_bytes: int | None = None
    over_plan: bool = False
    # On-demand tiers (`services.on_demand.overlay`): state `sleeping` when stopped on
    # purpose; the idle timeout, the last request (epoch s), the last cold start (s).
    mode: str | None = None
    idle_unload_s: int | None = None
    last_used: float | None = None
    cold_start_s: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
