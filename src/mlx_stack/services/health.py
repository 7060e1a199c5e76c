"""The one health rule, for `up`, `status` and the watchdog.

A service is healthy when its process is ours and alive, its liveness route answers,
and a real one-token completion goes through it; a completion slower than
``DEGRADED_AFTER_S`` makes it *degraded*. An open port or a 200 on a liveness route
says nothing about a wedged model, so the completion is what counts wherever one can
be asked for:

- a tier answers its own completion (a retrieval tier: one tiny embedding or rerank);
- the front door passes one to its first running tier (with no tier behind it, or
  for the watchdog, which restarts the front door only when it is dead, its liveness
  route is all there is to see);
- LiteLLM never gets one (it would cost cloud money): liveness only.

``check`` is one look (`status`, the watchdog): a completion whose answer also proves
liveness, or the liveness route alone. In one `status`, the front door's completion is
also the look at the tier that answered it (its ``x-mlx-stack-tier``, from no peer):
:class:`Proof` hands it over, so that tier is not asked a second completion at once.
``wait`` is `up`'s loop: the liveness route is polled cheaply while the model loads,
then completions until one answers. Callers build the :class:`Target`
(``service_control.health_target``) and handle the process side; every request goes
through the injectable ``Host``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from mlx_stack.core.service_state import ServiceState
from mlx_stack.system.host import Host, real
from mlx_stack.system.probes import ProbeResult

DEGRADED_AFTER_S = 2.0  # a one-token completion slower than this is "degraded"
GATEWAY_LIVENESS = "/health"  # the front door's liveness route (the only one without the key)
LITELLM_LIVENESS = "/health/liveliness"  # LiteLLM's unauthenticated liveness route (sic)
TIER_LIVENESS = "/health"  # vllm-mlx
PROBE_HEADERS = {"x-mlx-stack-probe": "1"}  # the front door does not count probes as traffic
LIVENESS_POLL_TIMEOUT_S = 2.0  # one liveness request while a service starts
MAX_COMPLETION_WAIT_S = 60.0  # one completion while a service starts
READY_POLL_S = 0.05  # liveness is polled this often while a service starts (refused: ~0.1 ms)
RETRY_COMPLETION_S = 0.2  # a failed completion is retried after this long


@dataclass(frozen=True)
class Target:
    """Where and how to look at one service."""

    service: str
    url: str  # the server's root (not /v1)
    route: str  # its liveness route
    model: str | None  # what a completion asks for; None: the liveness route is all
    api_key: str | None = None  # the front door's key (its other routes need it)
    kind: str = "chat"  # a retrieval tier (embedding | rerank) is asked one tiny request of its kind


def rate(result: ProbeResult) -> ServiceState:
    """A completion's answer: healthy, degraded (slower than ``DEGRADED_AFTER_S``) or down."""
    if not result.ok:
        return ServiceState.DOWN
    return ServiceState.HEALTHY if result.latency_s <= DEGRADED_AFTER_S else ServiceState.DEGRADED


@dataclass(frozen=True)
class Health:
    """One look at a service by the health rule."""

    state: ServiceState  # healthy | degraded | down
    result: ProbeResult  # the last request's answer (latency, error)
    completion: bool  # the result is a completion's (else the liveness route's)


def liveness(target: Target, timeout: float, host: Host | None = None) -> ProbeResult:
    return real(host).health(target.url, timeout=timeout, route=target.route)


def complete(target: Target, model: str, timeout: float, host: Host | None = None) -> ProbeResult:
    return real(host).completion(target.url, model, api_key=target.api_key, timeout=timeout,
                                 headers=PROBE_HEADERS, kind=target.kind)


def check(target: Target, timeout: float, host: Host | None = None) -> Health:
    """One look at a live process: a completion when the target has a model (its answer
    proves liveness too), else the liveness route (healthy or down, never degraded)."""
    if target.model is None:
        live = liveness(target, timeout, host)
        return Health(ServiceState.HEALTHY if live.ok else ServiceState.DOWN, live, False)
    answer = complete(target, target.model, timeout, host)
    return Health(rate(answer), answer, True)


@dataclass
class Proof:
    """The front door's look (``offer``), taken by the tier it was sent to (``take``)."""

    tier: str | None  # the tier the front door's completion asks for (None: no completion)
    _seen: Health | None = None
    _done: threading.Event = field(default_factory=threading.Event)

    def offer(self, seen: Health | None) -> None:
        """The front door's look; None when it makes none (not running, no tier behind it)."""
        if seen is not None and seen.completion and seen.result.served_by == self.tier:
            self._seen = seen
        self._done.set()

    def take(self, wait_s: float = 1.0) -> Health | None:
        """The front door's look if the tier itself answered it; None (look yourself) when it
        did not, or has not within ``wait_s`` (a slow front door must not slow the tier's row)."""
        self._done.wait(wait_s)
        return self._seen


class Waited(StrEnum):
    READY = "ready"
    EXITED = "exited"  # the process is gone (or not ours any more)
    CANCELLED = "cancelled"  # Ctrl-C / SIGTERM in the command that waits
    TIMED_OUT = "timed-out"


def wait(target: Target, *, alive: Callable[[], bool], cancelled: Callable[[], bool], deadline: float,
         real_completion: bool = True, model: Callable[[], str | None] | None = None,
         host: Host | None = None) -> tuple[Waited, float]:
    """Poll until the service is healthy by the rule (liveness only without
    ``real_completion``) or ``deadline`` (the host's monotonic clock); returns the outcome
    and the seconds waited. ``model`` is asked once liveness answered, each round (the
    front door's completion goes to whichever tier runs by then); default: the target's."""
    h = real(host)
    start = h.monotonic()
    live = False
    while True:
        if cancelled():
            return Waited.CANCELLED, h.monotonic() - start
        if not alive():
            return Waited.EXITED, h.monotonic() - start
        if not live:
            live = liveness(target, LIVENESS_POLL_TIMEOUT_S, h).ok
        if live:
            if not real_completion:
                return Waited.READY, h.monotonic() - start
            name = model() if model is not None else target.model
            if name is None:  # a front door with no tier behind it: liveness is all we can see
                return Waited.READY, h.monotonic() - start
            left = max(1.0, deadline - h.monotonic())
            if complete(target, name, min(MAX_COMPLETION_WAIT_S, left), h).ok:
                return Waited.READY, h.monotonic() - start
        if h.monotonic() >= deadline:
            return Waited.TIMED_OUT, h.monotonic() - start
        h.sleep(RETRY_COMPLETION_S if live else READY_POLL_S)
