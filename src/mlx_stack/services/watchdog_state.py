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
from pathlib import Path
from typing import TYPE_CHECKING

from mlx_stack.core.service_state import ServiceState, from_watchdog, parse
from mlx_stack.json_types import JSON, JSONObject, as_list, as_object
from mlx_stack.paths import Paths

if TYPE_CHECKING:  # the front door reads the state file: no process tools imported for it
    from mlx_stack.core.service_state import ServiceStatus
    from mlx_stack.core.watchdog import Policy, Record
    from mlx_stack.system.host import Host

LOG_LINES_IN_STATE = 10
# (what was written, when on the wall clock): the loop keeps the last one, to skip
# rewriting an unchanged state within an interval
Written = tuple[str, float]


def _wall(mono: float | None, now_mono: float, now_wall: float) -> float | None:
    return None if mono is None else round(now_wall - (now_mono - mono), 3)


def write_state(p: Paths, records: dict[str, Record], now: float, policy: Policy, *,
                host: Host | None = None, last: Written | None = None) -> Written:
    """Write the loop's view (unless it is ``last``, the write before, less than an
    interval ago); returns what the file now holds, the ``last`` of the next call."""
    from mlx_stack.core.watchdog import State  # (the watchdog's own import: `status` skips it)
    from mlx_stack.services import logs
    from mlx_stack.system.fs import atomic_write
    from mlx_stack.system.host import real

    wall = real(host).time()
    services: JSONObject = {}
    for name, rec in records.items():
        entry: JSONObject = {
            "state": from_watchdog(rec.state).value, "reason": rec.reason,
            "since": _wall(rec.since, now, wall),
            "failures": rec.failures,
            "restarts_in_window": sum(1 for t in rec.restarts if now - t < policy.flap_window_s),
            "next_start_at": _wall(rec.next_start, now, wall),
        }
        if rec.state in (State.FLAPPING, State.BACKOFF):
            lines: list[JSON] = [*logs.tail_lines(p.log_file(name), LOG_LINES_IN_STATE)]
            entry["last_log_lines"] = lines
        services[name] = entry
    facts = sorted((n, r.state, r.reason, r.failures, r.restarts, r.since, r.next_start)
                   for n, r in records.items())
    key = repr((str(p.watchdog_state_file), facts))
    if (last is not None and last[0] == key and wall - last[1] < policy.interval_s
            and p.watchdog_state_file.exists()):
        return last  # unchanged: spare the disk a write (and an fsync) every liveness check
    data = {"pid": os.getpid(), "updated_at": round(wall, 3), "interval_s": policy.interval_s,
            "services": services}
    atomic_write(p.watchdog_state_file, json.dumps(data, indent=2) + "\n")
    return key, wall


def read_state(p: Paths, *, host: Host | None = None) -> dict[str, object] | None:
    """The running watchdog's last written view, or None if no watchdog runs."""
    if not lock_held(p.watchdog_lock_file, host=host):  # a held lock means a live watchdog
        return None
    try:
        data = json.loads(p.watchdog_state_file.read_text())
    except (OSError, ValueError):
        return None
    return as_object(data)


def overlay(p: Paths, statuses: list[ServiceStatus], *, host: Host | None = None) -> list[ServiceStatus]:
    """`status` rows with the watchdog's view laid over them: a service the watchdog
    declared flapping shows ``flapping`` with the reason and its last log lines; one
    waiting to be restarted says when. Rows stay as probed when no watchdog runs or
    the probe found the service healthy."""
    from dataclasses import replace

    state = read_state(p, host=host)
    if not state:
        return statuses
    seen = as_object(state.get("services")) or {}
    out: list[ServiceStatus] = []
    from mlx_stack.system.host import real

    now = real(host).time()
    for s in statuses:
        entry = as_object(seen.get(s.name))
        if entry is None or s.state in (ServiceState.HEALTHY, ServiceState.DEGRADED):
            out.append(s)
            continue
        logged = [ln.strip() for ln in as_list(entry.get("last_log_lines")) if isinstance(ln, str)]
        lines = [ln for ln in logged if ln][-3:]
        tail = f"; last log: {' | '.join(lines)}" if lines else ""
        seen_state = parse(entry.get("state"))
        if seen_state is ServiceState.FLAPPING:
            out.append(replace(s, state=ServiceState.FLAPPING, detail=f"{entry.get('reason', '')}{tail}"))
        elif seen_state is ServiceState.BACKOFF and (at := entry.get("next_start_at")):
            wait = max(0.0, float(at) - now) if isinstance(at, int | float | str) else 0.0
            out.append(replace(s, detail=f"watchdog restarts it in {wait:.0f} s ({entry.get('reason', '')})"))
        else:
            out.append(s)
    return out


def lock_held(path: Path, *, host: Host | None = None) -> bool:
    """True if a process holds the flock on ``path`` (a live watchdog)."""
    if host is not None:
        return host.lock_held(path)
    # not through the real Host: the front door reads the state too, without process tools
    from mlx_stack.system.locks import is_held

    return is_held(path)
