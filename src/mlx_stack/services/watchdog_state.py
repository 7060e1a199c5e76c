"""The watchdog's state file, ``run/watchdog.json``, and how `status` reads it.

Written by the watchdog loop after every change (and at least every interval)::

    {"pid": 123, "updated_at": <epoch s>, "interval_s": 30.0,
     "services": {"fast": {"state": "flapping", "reason": "...", "since": <epoch s>,
                           "failures": 6, "restarts_in_window": 5,
                           "next_start_at": <epoch s> | null,
                           "last_log_lines": ["...", ...]}}}

``last_log_lines`` is there for a service in backoff or flapping. ``read_state``
returns the mapping only while a watchdog holds ``run/watchdog.lock``; ``overlay``
lays it over the rows of `mlx-stack status`.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from mlx_stack.core.service_state import ServiceState, from_watchdog, parse
from mlx_stack.core.watchdog import Policy, Record, State
from mlx_stack.paths import Paths

if TYPE_CHECKING:  # the front door reads the state file: no process tools imported for it
    from mlx_stack.system.host import Host

LOG_LINES_IN_STATE = 10


def _wall(mono: float | None, now_mono: float, now_wall: float) -> float | None:
    return None if mono is None else round(now_wall - (now_mono - mono), 3)


def write_state(p: Paths, records: dict[str, Record], now: float, policy: Policy, *,
                host: Host | None = None) -> None:
    from mlx_stack.services import logs
    from mlx_stack.system.fs import atomic_write
    from mlx_stack.system.host import real

    wall = real(host).time()
    services: dict[str, Any] = {}
    for name, rec in records.items():
        entry: dict[str, Any] = {
            "state": from_watchdog(rec.state).value, "reason": rec.reason,
            "since": _wall(rec.since, now, wall),
            "failures": rec.failures,
            "restarts_in_window": sum(1 for t in rec.restarts if now - t < policy.flap_window_s),
            "next_start_at": _wall(rec.next_start, now, wall),
        }
        if rec.state in (State.FLAPPING, State.BACKOFF):
            entry["last_log_lines"] = logs.tail_lines(p.log_file(name), LOG_LINES_IN_STATE)
        services[name] = entry
    global _last_written
    facts = sorted((n, r.state, r.reason, r.failures, r.restarts, r.since, r.next_start)
                   for n, r in records.items())
    key = repr((str(p.watchdog_state_file), facts))
    if (_last_written is not None and _last_written[0] == key and wall - _last_written[1] < policy.interval_s
            and p.watchdog_state_file.exists()):
        return  # unchanged: spare the disk a write (and an fsync) every liveness check
    data = {"pid": os.getpid(), "updated_at": round(wall, 3), "interval_s": policy.interval_s,
            "services": services}
    atomic_write(p.watchdog_state_file, json.dumps(data, indent=2) + "\n")
    _last_written = (key, wall)


_last_written: tuple[str, float] | None = None


def read_state(p: Paths) -> dict[str, Any] | None:
    """The running watchdog's last written view, or None if no watchdog runs."""
    from mlx_stack.system.locks import is_held

    if not is_held(p.watchdog_lock_file):  # a held lock means a live watchdog
        return None
    try:
        data = json.loads(p.watchdog_state_file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def overlay(p: Paths, statuses: list[Any], *, host: Host | None = None) -> list[Any]:
    """`status` rows with the watchdog's view laid over them: a service the watchdog
    declared flapping shows ``flapping`` with the reason and its last log lines; one
    waiting to be restarted says when. Rows stay as probed when no watchdog runs or
    the probe found the service healthy."""
    from dataclasses import replace

    state = read_state(p)
    if not state:
        return statuses
    seen = state.get("services", {})
    out = []
    from mlx_stack.system.host import real

    now = real(host).time()
    for s in statuses:
        entry = seen.get(s.name)
        if not isinstance(entry, dict) or s.state in (ServiceState.HEALTHY, ServiceState.DEGRADED):
            out.append(s)
            continue
        lines = [ln.strip() for ln in entry.get("last_log_lines") or [] if ln.strip()][-3:]
        tail = f"; last log: {' | '.join(lines)}" if lines else ""
        seen_state = parse(entry.get("state"))
        if seen_state is ServiceState.FLAPPING:
            out.append(replace(s, state=ServiceState.FLAPPING, detail=f"{entry.get('reason', '')}{tail}"))
        elif seen_state is ServiceState.BACKOFF and entry.get("next_start_at"):
            wait = max(0.0, float(entry["next_start_at"]) - now)
            out.append(replace(s, detail=f"watchdog restarts it in {wait:.0f} s ({entry.get('reason', '')})"))
        else:
            out.append(s)
    return out

