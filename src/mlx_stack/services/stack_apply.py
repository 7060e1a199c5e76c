"""Put a new stack in place, touching on a running stack only what changed.

Under the stack lock:

1. tiers whose definition changed are stopped (they may keep their port);
2. added and changed tiers start, in parallel, until each answered a real
   completion. If one fails, what was just started is stopped, changed tiers
   get their old definition back, and stack.yaml is left as it was;
3. stack.yaml is written (atomically);
4. the front door gets the regenerated routes file and re-reads it in place
   (``mlx_stack.gateway.routes_file``), checked through the front door itself; when
   it did not take the change (or its port changed) it is restarted;
5. removed tiers stop, once the gateway no longer routes to them.

Unchanged tiers are never signalled: they keep their pids and keep serving.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from mlx_stack.core.stack import GATEWAY, Stack
from mlx_stack.core.stack_change import StackDiff, diff
from mlx_stack.errors import ServiceError, StateError
from mlx_stack.paths import Paths
from mlx_stack.services import dashboard, stack_store
from mlx_stack.services.gateway_config import write_gateway_config
from mlx_stack.services.health import PROBE_HEADERS
from mlx_stack.services.running import base_url, running_record
from mlx_stack.services.service_control import (
    HEALTH_TIMEOUT_S,
    litellm_port,
    start_service,
    stop_service,
)
from mlx_stack.system import secrets
from mlx_stack.system.host import Host, real

RELOAD_TIMEOUT_S = 20.0
LOCK_TIMEOUT_S = 600.0


@dataclass
class ApplyResult:
    diff: StackDiff
    live: bool = False  # the stack was running: changes were applied to it
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    gateway: str = "untouched"  # untouched | reloaded | restarted | started


def apply(p: Paths, new: Stack, *, start: bool, say: Callable[[str], None] = lambda _: None,
          health_timeout: float = HEALTH_TIMEOUT_S, replace_corrupt: bool = False,
          force: bool = False, host: Host | None = None) -> ApplyResult:
    """Write ``new`` as the stack; on a running stack (and ``start``), change only what differs.

    ``replace_corrupt``: an unreadable stack.yaml is overwritten (a whole new setup)
    instead of raising StateError. ``host``: the machine (tests pass a fake).
    """
    h = real(host)
    with h.lock(p.lock_file, timeout=LOCK_TIMEOUT_S, what="setup"):
        try:
            old = stack_store.load(p) if stack_store.exists(p) else None
        except StateError:
            if not replace_corrupt:
                raise
            old = None
        d = diff(old, new)
        running = {s for s in (old.services if old else []) if running_record(p, s, host=h) is not None}
        if not running or not start or old is None:
            stack_store.save(p, new)
            return ApplyResult(d)
        result = ApplyResult(d, live=True)
        _start_tiers(p, old, new, d, running, result, say, health_timeout, h, force)
        stack_store.save(p, new)
        if GATEWAY in running:
            _update_gateway(p, old, new, d, result, say, health_timeout, h)
        for name in d.removed:
            if name in running:
                say(f"stopping tier {name}")
                stop_service(p, name, host=h)
                result.stopped.append(name)
        return result


def _start_tiers(p: Paths, old: Stack, new: Stack, d: StackDiff, running: set[str], result: ApplyResult,
                 say: Callable[[str], None], health_timeout: float, h: Host, force: bool = False) -> None:
    changed_running = [n for n in d.changed if n in running]
    for name in changed_running:
        say(f"stopping tier {name} (its definition changed)")
        stop_service(p, name, host=h)
    # On-demand tiers sleep until the front door needs them.
    todo = [n for n in (*d.added, *d.changed) if not new.tier(n).on_demand]
    if not todo:
        return
    from mlx_stack.services import serving_plan

    say("starting " + ", ".join(todo) + " (each counts once it answered a real completion)")
    launched: list[str] = []

    def one(name: str) -> ServiceError | None:
        try:
            start_service(p, name, stack=new, timeout=health_timeout, force=True,  # guarded once for all
                          host=h)
        except ServiceError as exc:
            return exc
        finally:
            if running_record(p, name, host=h) is not None:
                launched.append(name)
        return None

    try:
        # The memory guard sees the changed tiers stopped (they come back if it refuses).
        serving_plan.check_start(p, new, todo, force=force, host=h)
        errors = [e for e in h.in_parallel([(lambda n=n: one(n)) for n in todo]) if e is not None]
        if errors:
            raise errors[0] if len(errors) == 1 else ServiceError(
                "; ".join(e.message for e in errors), hint=errors[0].hint)
    except KeyboardInterrupt:
        # Ctrl-C/SIGTERM: stop what this setup started (the workers may not have said so
        # yet), put nothing back (that would wait for health checks), say what is gone.
        from mlx_stack.system import interrupt

        interrupt.cancelled.set()
        with h.signals_ignored():
            started = [n for n in todo if running_record(p, n, host=h) is not None]
            h.in_parallel([(lambda n=n: stop_service(p, n, grace=5.0, host=h)) for n in started])
        gone = sorted(set(started) | set(changed_running))
        from mlx_stack.services.lifecycle import Interrupted

        raise Interrupted("setup interrupted" + (f"; stopped {', '.join(gone)}" if gone else ""),
                          hint="the other tiers keep running; run the same setup again to finish") from None
    except BaseException:
        for name in launched:
            stop_service(p, name, host=h)
        for name in changed_running:  # put the old definition back
            with contextlib.suppress(ServiceError):
                start_service(p, name, stack=old, timeout=health_timeout, force=True, host=h)
        raise
    result.started += todo


def _update_gateway(p: Paths, old: Stack, new: Stack, d: StackDiff, result: ApplyResult,
                    say: Callable[[str], None], health_timeout: float, h: Host) -> None:
    if old.gateway == new.gateway and not d.routes_changed:
        return
    if old.gateway == new.gateway:
        write_gateway_config(p, new, cloud_port=litellm_port(p))
        dashboard.write_context(p, new)  # the page's planned memory follows the new tiers
        if _reloaded(p, new, d, h):
            say("gateway routes reloaded in place (no restart)")
            result.gateway = "reloaded"
            return
        say("the gateway did not take the new routes; restarting it")
    else:
        say(f"restarting the gateway on port {new.gateway.port}")
    stop_service(p, GATEWAY, host=h)
    start_service(p, GATEWAY, stack=new, timeout=health_timeout, host=h)
    result.gateway = "restarted"


def _reloaded(p: Paths, new: Stack, d: StackDiff, h: Host, timeout: float = RELOAD_TIMEOUT_S) -> bool:
    """True once the gateway serves exactly the new tiers (a request triggers the reload)."""
    url = base_url(new, GATEWAY)
    key = secrets.read_secret(p, secrets.GATEWAY_KEY)
    awake = set(new.resident_tiers)  # a probe never wakes an on-demand tier
    target = next((n for n in (*d.added, *d.changed, *new.tier_names) if n in awake), new.tier_names[0])
    wanted, gone = set(new.tier_names), set(d.removed)
    deadline = h.monotonic() + timeout
    while h.monotonic() < deadline:
        h.completion(url, target, api_key=key, timeout=30.0, headers=PROBE_HEADERS)
        listed = h.served_models(url, api_key=key)
        if listed is not None and wanted <= set(listed) and not gone & set(listed):
            return True
        h.sleep(0.3)
    return False
