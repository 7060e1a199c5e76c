"""On-demand tiers: start one for the front door (making room first), put one to sleep.

The front door reaches these through the launcher seam (:mod:`mlx_stack.system.launcher`):
its ``ChildLauncher`` runs ``python -m mlx_stack.services.on_demand VERB HOME TIER ...``
(:func:`main`), which calls them through :class:`LocalLauncher`. They use the same
primitives as `up`, `down` and the watchdog (``service_control.start_service`` /
``stop_service``: the same pid files, log writer and process-identity checks) under the
same stack lock, taken with a short timeout: the front door never waits long on an
`up`/`down` in progress, and it never holds the lock while a tier loads (it launches,
releases the lock, then waits for the tier's health on its own).

The memory guard (``serving_plan.check_start``) decides whether the tier fits beside
what runs; when it does not, idle on-demand tiers the front door names (least recently
used first) are stopped one by one until it does. Resident tiers are never stopped
here. A tier that still does not fit raises :class:`NoRoom` (the request falls back).

``run/on-demand.json`` holds what `status` shows of each on-demand tier: its last use,
its last cold-start time and the counts (written by the front door, atomically).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlx_stack.core.service_state import ServiceState
from mlx_stack.errors import ConflictError, MlxStackError
from mlx_stack.json_types import JSON, as_object
from mlx_stack.paths import Paths
from mlx_stack.system.launcher import CannotStart, NoRoom, Woken, process_alive, write_state

if TYPE_CHECKING:
    from mlx_stack.core.hardware import HardwareProfile
    from mlx_stack.core.service_state import ServiceStatus
    from mlx_stack.core.stack import Stack
    from mlx_stack.system.host import Host

__all__ = ["CannotStart", "LocalLauncher", "NoRoom", "Woken", "process_alive", "write_state"]
LOCK_TIMEOUT_S = 20.0  # an `up`/`down`/setup holding the stack lock longer: the request falls back


def wake(p: Paths, tier: str, evictable: Sequence[str], *, lock_timeout: float = LOCK_TIMEOUT_S,
         hw: HardwareProfile | None = None, host: Host | None = None) -> Woken:
    """Launch ``tier`` (no wait for health) unless it runs, stopping tiers of ``evictable``
    (in that order, on-demand ones only) while the memory guard refuses it."""
    from mlx_stack.services import serving_plan, stack_store
    from mlx_stack.services.running import running_record
    from mlx_stack.services.service_control import start_service, stop_service
    from mlx_stack.system.host import real

    h = real(host)
    try:
        with h.lock(p.lock_file, timeout=lock_timeout, what="up/down"):
            stack = stack_store.load(p)
            stack.tier(tier)
            existing = running_record(p, tier, host=h)
            if existing is not None:
                return Woken(existing.pid, existing.start_time, True)
            if hw is None:
                from mlx_stack.services import hardware

                hw = hardware.detect()
            on_demand = {t.name for t in stack.tiers if t.on_demand}
            victims = [n for n in evictable if n != tier and n in on_demand]
            evicted: list[str] = []
            try:  # would it fit once every idle on-demand tier is stopped? If not, stop none
                serving_plan.check_start(p, stack, [tier], hw=hw, assume_stopped=victims, host=h)
            except ConflictError as exc:
                raise NoRoom(exc.message) from None
            while True:
                try:
                    serving_plan.check_start(p, stack, [tier], hw=hw, host=h)
                    break
                except ConflictError as exc:
                    victim = next((v for v in victims if running_record(p, v, host=h) is not None), None)
                    if victim is None:
                        raise NoRoom(exc.message) from None
                    victims.remove(victim)
                    stop_service(p, victim, host=h)
                    evicted.append(victim)
            # The guard just passed (with the evictions): start without checking it again.
            record = start_service(p, tier, stack=stack, wait=False, force=True, host=h)
            return Woken(record.pid, record.start_time, False, evicted)
    except NoRoom:
        raise
    except MlxStackError as exc:
        raise CannotStart(exc.message) from None


def put_to_sleep(p: Paths, tier: str, *, lock_timeout: float = 2.0, host: Host | None = None) -> bool:
    """Stop an idle on-demand tier; False when the stack lock is busy (try again later)."""
    from mlx_stack.services.service_control import stop_service
    from mlx_stack.system.host import real

    h = real(host)
    try:
        with h.lock(p.lock_file, timeout=lock_timeout, what="up/down"):
            stop_service(p, tier, host=h)
            return True
    except ConflictError:
        return False


def reap_children(*, host: Host | None = None) -> None:
    """Collect the exited tiers (and log writers) this process started: no zombies."""
    from mlx_stack.system.host import real

    real(host).reap_children()


def is_running(p: Paths, tier: str, *, host: Host | None = None) -> bool:
    """The tier's pid file names a live process of ours."""
    from mlx_stack.services.running import running_record

    return running_record(p, tier, host=host) is not None


def clear_failed_start(p: Paths, tier: str, *, host: Host | None = None) -> None:
    """After a cold start that failed: stop what is left and drop its pid file, so the tier
    is asleep again (the watchdog does not restart it) and the next request starts it anew."""
    from mlx_stack.services.service_control import stop_service
    from mlx_stack.system.host import real

    h = real(host)
    try:
        with h.lock(p.lock_file, timeout=LOCK_TIMEOUT_S, what="up/down"):
            stop_service(p, tier, grace=2.0, host=h)
    except MlxStackError:
        pass


# --- the state `status` shows ---------------------------------------------------------

def overlay(p: Paths, stack: Stack, statuses: list[ServiceStatus]) -> list[ServiceStatus]:
    """`status` rows of on-demand tiers: ``sleeping`` instead of ``stopped``, with the mode,
    the last use and the last cold-start time the front door recorded."""
    from dataclasses import replace

    state = read_state(p)
    by_name = {t.name: t for t in stack.tiers}
    out: list[ServiceStatus] = []
    for s in statuses:
        tier = by_name.get(s.name)
        if s.kind != "tier" or tier is None or not tier.on_demand:
            out.append(s)
            continue
        seen = state.get(s.name, {})
        used, cold = seen.get("last_used"), seen.get("cold_start_s")
        # stopped on purpose (never started, idle, evicted): sleeping
        shown = ServiceState.SLEEPING if s.state == ServiceState.STOPPED else s.state
        out.append(replace(s, state=shown, mode=tier.mode,
                           idle_unload_s=tier.idle_unload,
                           last_used=used if isinstance(used, (int, float)) else None,
                           cold_start_s=cold if isinstance(cold, (int, float)) else None))
    return out


def read_state(p: Paths) -> dict[str, dict[str, object]]:
    """Per tier: last_used (epoch s), cold_start_s, cold_starts, evictions, idle_unloads."""
    try:
        doc = json.loads(p.on_demand_state_file.read_text())
    except (OSError, ValueError):
        return {}
    tiers = as_object((as_object(doc) or {}).get("tiers")) or {}
    return {n: v for n, v in ((n, as_object(v)) for n, v in tiers.items()) if v is not None}


class LocalLauncher:
    """The control plane's :class:`~mlx_stack.system.launcher.Launcher`: this module's
    functions, in this process."""

    def __init__(self, host: Host | None = None) -> None:
        self.host = host

    def wake(self, p: Paths, tier: str, evictable: Sequence[str]) -> Woken:
        return wake(p, tier, evictable, host=self.host)

    def put_to_sleep(self, p: Paths, tier: str) -> bool:
        return put_to_sleep(p, tier, host=self.host)

    def clear_failed_start(self, p: Paths, tier: str) -> None:
        clear_failed_start(p, tier, host=self.host)

    def is_running(self, p: Paths, tier: str) -> bool:
        return is_running(p, tier, host=self.host)

    def process_alive(self, p: Paths, tier: str, pid: int, start_time: float) -> bool:
        return process_alive(p, tier, pid, start_time, host=self.host)

    def reap_children(self) -> None:
        reap_children(host=self.host)

    def write_state(self, p: Paths, tiers: Mapping[str, Mapping[str, JSON]]) -> None:
        write_state(p, tiers)


def main(argv: Sequence[str]) -> int:
    """``VERB HOME TIER [EVICTABLE...]`` (VERB: wake, sleep, clear): one JSON line on stdout,
    the result or ``{"error": "no-room" | "cannot-start", "message": ...}``. What the front
    door's ``ChildLauncher`` runs."""
    if len(argv) < 3 or argv[0] not in ("wake", "sleep", "clear"):
        print(json.dumps({"error": "usage", "message": "VERB HOME TIER [EVICTABLE...]"}))
        return 2
    verb, home, tier, rest = argv[0], argv[1], argv[2], list(argv[3:])
    p, local = Paths(Path(home)), LocalLauncher()
    out: dict[str, JSON]
    try:
        if verb == "wake":
            out = local.wake(p, tier, rest).as_dict()
        elif verb == "sleep":
            out = {"stopped": local.put_to_sleep(p, tier)}
        else:
            local.clear_failed_start(p, tier)
            out = {"cleared": True}
    except NoRoom as exc:
        out = {"error": "no-room", "message": str(exc)}
    except CannotStart as exc:
        out = {"error": "cannot-start", "message": str(exc)}
    except Exception as exc:  # one line the front door can show, never a traceback
        out = {"error": "cannot-start", "message": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
