"""The dashboard: a static page at ``/`` and its JSON view at ``/api/dashboard`` (with the key).

Nothing here runs per proxied request. A background task copies the counters every
``SAMPLE_S`` seconds into a bounded history (15 minutes) and notices restarted tiers
(their pid file's start time changed). The JSON view is made on demand, at most once a
second however many pages poll it: each tier's health route (in parallel), its process
and resident memory (psutil, in a thread), the watchdog's state file, and the static
context `mlx-stack` writes next to the routes file (hardware, budget, plans).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, cast

from mlx_stack.core import dashboard as core
from mlx_stack.core.stack import CLOUD
from mlx_stack.gateway.metrics import Metrics
from mlx_stack.gateway.routes_file import RoutesFile
from mlx_stack.json_types import as_object
from mlx_stack.paths import DASHBOARD_CONTEXT_FILE, Paths

if TYPE_CHECKING:
    from mlx_stack.gateway.metrics import Event
    from mlx_stack.gateway.on_demand import OnDemand
    from mlx_stack.json_types import JSONObject
    from mlx_stack.services.dashboard import Context

log = logging.getLogger("mlx_stack.front_door")

VIEW_ROUTE = "/api/dashboard"
PAGES = {"/": ("index.html", b"text/html; charset=utf-8"),
         "/dashboard.js": ("dashboard.js", b"text/javascript; charset=utf-8"),
         "/dashboard.css": ("dashboard.css", b"text/css; charset=utf-8")}
PAGE_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; "
                                 b"connect-src 'self'; img-src 'self' data:; form-action 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]
VIEW_HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
VIEW_CACHE_S = 1.0
HEALTH_S = 1.5
RSS_EVERY_S = 5.0  # resident memory is re-measured at most this often (it scans the process table)
RESTARTS_KEPT = 50
EVENTS_SHOWN = 30
CLOUD_SERVICE = "litellm"  # the cloud upstream's process (its pid file's name)


def _page(name: str) -> bytes:
    return resources.files("mlx_stack.gateway").joinpath("static", name).read_bytes()


class Dashboard:
    def __init__(self, metrics: Metrics, routes: RoutesFile, on_demand: OnDemand | None = None) -> None:
        self.metrics = metrics
        self.routes = routes
        self.on_demand = on_demand  # when the stack has on-demand tiers
        self.history: deque[core.Sample] = deque(maxlen=core.HISTORY_LEN)
        self.restarts: deque[Event] = deque(maxlen=RESTARTS_KEPT)
        self._starts: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._pages: dict[str, bytes] = {}
        self._ctx: tuple[tuple[int, int] | None, Context] = (None, {})
        self._view: tuple[float, bytes] = (0.0, b"")
        self._making: asyncio.Future[bytes] | None = None
        self._rss: dict[int, tuple[float, int | None]] = {}  # pid -> (measured at, bytes)
        self.peers: Callable[[], list[JSONObject]] | None = None  # each peer's row (issue 26)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.sample()
        self._task = asyncio.get_running_loop().create_task(self._sampler())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _sampler(self) -> None:
        while True:
            await asyncio.sleep(core.SAMPLE_S)
            try:
                self.sample()
            except Exception:  # the history must never take the front door down
                log.exception("dashboard sample failed")

    # --- the history ------------------------------------------------------------------------

    def _live(self, name: str) -> core.TierSample:
        t = self.metrics.tiers.get(name)
        if t is None:
            return core.ZERO
        return core.TierSample(tuple(t.counters[c] for c in core.SAMPLED), tuple(t.hist["ttft_seconds"][0]))

    def sample(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.history.append(core.Sample(now, {n: self._live(n) for n in self.metrics.tiers}))
        run_dir = self._run_dir()
        if run_dir is not None:
            self._note_restarts(run_dir)

    def _note_restarts(self, run_dir: Path) -> None:
        """A tier whose pid file names a new process start was restarted (by the watchdog or `up`)."""
        for name in self.routes.current.tiers:
            start = _start_time(run_dir, name)
            if start is None:
                continue
            seen = self._starts.get(name)
            self._starts[name] = start
            if seen is not None and start != seen and start > 0:
                why = _watchdog_reason(run_dir, name)
                self.restarts.append({"kind": "restart", "at": round(start, 3), "tier": name, "to": None,
                                      "reason": f"restarted after: {why}" if why else
                                      "started again (a new process)"})

    # --- the context file ---------------------------------------------------------------------

    def context(self) -> Context:
        path = self.routes.path.parent / DASHBOARD_CONTEXT_FILE  # next to the routes file
        try:
            st = path.stat()
        except OSError:
            return {}
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp != self._ctx[0]:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}
            self._ctx = (stamp, cast("Context", data) if isinstance(data, dict) else {})
        return self._ctx[1]

    def _run_dir(self) -> Path | None:
        home = self.context().get("home")
        return Paths(Path(home)).run_dir if isinstance(home, str) and home else None

    # --- HTTP ---------------------------------------------------------------------------------

    def page(self, path: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        name, ctype = PAGES[path]
        body = self._pages.get(name)
        if body is None:
            body = self._pages[name] = _page(name)
        return body, [(b"content-type", ctype), *PAGE_HEADERS]

    async def view(self) -> bytes:
        """The JSON view, made at most once per ``VIEW_CACHE_S`` (concurrent callers share it)."""
        at, body = self._view
        if body and time.monotonic() - at < VIEW_CACHE_S:
            return body
        if self._making is not None:
            return await asyncio.shield(self._making)
        self._making = asyncio.get_running_loop().create_future()
        try:
            body = json.dumps(await self._make(), separators=(",", ":")).encode()
            self._view = (time.monotonic(), body)
            self._making.set_result(body)
            return body
        except BaseException as exc:
            self._making.set_exception(exc)
            self._making.exception()  # retrieved: no "never retrieved" warning
            raise
        finally:
            self._making = None

    async def _make(self) -> dict[str, object]:
        ctx = self.context()
        routes = self.routes.current
        names = [*routes.tiers, *([CLOUD] if routes.cloud is not None and CLOUD in self.routes.pools else [])]
        pools = self.routes.pools
        answers = await asyncio.gather(*(pools[n].alive(HEALTH_S) if n in pools else _false() for n in names))
        run_dir = self._run_dir()
        procs, wd = await asyncio.to_thread(_processes, run_dir, names, self._rss) if run_dir else ({}, {})
        now = time.time()
        history = list(self.history)
        planned = ctx.get("planned_bytes") or {}
        tiers: list[dict[str, object]] = []
        for name, ok in zip(names, answers, strict=True):
            proc = procs.get(name, {})
            state, detail = core.tier_state(
                has_record=bool(proc) if run_dir else True, process_alive=proc.get("alive") if proc else None,
                answers=ok, watchdog=wd.get(CLOUD_SERVICE if name == CLOUD else name))
            pool = pools.get(name)
            if state == "stopped" and self.on_demand is not None and self.on_demand.is_on_demand(name):
                state, detail = "sleeping", "on demand: started by the next request that needs it"
            if ok and pool is not None and pool.cooling:
                state, detail = "recovering", "answers again; the front door puts it back in a moment"
            live = self._live(name)
            up = routes.cloud if name == CLOUD else routes.tiers[name]
            tiers.append({
                "name": name, "kind": "cloud" if name == CLOUD else "tier",
                "model": up.model if up is not None else None,
                "state": state, "state_class": core.state_class(state), "detail": detail,
                "pid": proc.get("pid"), "started_at": proc.get("start_time"),
                "rss_bytes": proc.get("rss"), "planned_bytes": planned.get(name),
                **core.counts(live), **core.rates(live, history, name, now, self.metrics.started_at),
            })
        events: list[Event] = [*self.metrics.events, *self.restarts]
        events.sort(key=lambda e: e["at"], reverse=True)
        return {
            "schema": core.VIEW_SCHEMA, "now": round(now, 3), "started_at": round(self.metrics.started_at, 3),
            "sample_s": core.SAMPLE_S, "history_s": core.HISTORY_S,
            "hardware": ctx.get("hardware"), "budget": ctx.get("budget"),
            "tiers": tiers, "history": core.series(history, names), "events": events[:EVENTS_SHOWN],
            "peers": self.peers() if self.peers is not None else [],
        }


async def _false() -> bool:
    return False


def _start_time(run_dir: Path, name: str) -> float | None:
    """The process start time in a pid file (plain JSON read: no psutil on the sampler)."""
    try:
        return float(json.loads(Paths.pid_file_in(run_dir, name).read_text())["start_time"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _watchdog_state(run_dir: Path) -> dict[str, Mapping[str, object]]:
    """The running watchdog's last view per service (``services.watchdog_state`` writes it;
    read here from the file, with the same rule: a held lock means a live watchdog)."""
    from mlx_stack.system.locks import is_held

    p = Paths(run_dir.parent)
    if not is_held(p.watchdog_lock_file):
        return {}
    try:
        state: object = json.loads(p.watchdog_state_file.read_text())
    except (OSError, ValueError):
        return {}
    services = (as_object(state) or {}).get("services")
    return cast("dict[str, Mapping[str, object]]", services) if isinstance(services, dict) else {}


def _watchdog_reason(run_dir: Path, name: str) -> str:
    entry = _watchdog_state(run_dir).get(name)
    return str(entry.get("reason") or "") if isinstance(entry, dict) else ""


class _Proc(TypedDict, total=False):
    pid: int | None
    start_time: float | None
    alive: bool
    rss: int | None


def _processes(run_dir: Path, names: list[str], rss_cache: dict[int, tuple[float, int | None]]
               ) -> tuple[dict[str, _Proc], dict[str, Mapping[str, object]]]:
    """Per upstream: its pid record, whether that process still runs, its resident memory
    (re-measured every ``RSS_EVERY_S``)."""
    from mlx_stack.system import pidfile, server_stats

    now = time.monotonic()
    out: dict[str, _Proc] = {}
    live: set[int] = set()
    for name in names:
        record = pidfile.read(run_dir, CLOUD_SERVICE if name == CLOUD else name)
        if record is None:
            continue
        alive = record.pid > 0 and pidfile.is_ours(record)
        rss = None
        if alive:
            live.add(record.pid)
            at, rss = rss_cache.get(record.pid, (0.0, None))
            if now - at >= RSS_EVERY_S:
                rss = server_stats.tree_rss(record.pid)
                rss_cache[record.pid] = (now, rss)
        out[name] = {"pid": record.pid if alive else None, "start_time": record.start_time or None,
                     "alive": alive, "rss": rss}
    for pid in [p for p in rss_cache if p not in live]:
        del rss_cache[pid]
    return out, _watchdog_state(run_dir)
