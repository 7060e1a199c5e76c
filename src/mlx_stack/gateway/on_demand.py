"""On-demand tiers inside the front door: start on the first request, sleep when idle.

For each on-demand tier (the routes file marks them) the front door keeps: requests in
flight, its last use, the start in progress (one per tier, shared by every request that
waits for it) and the counts. Starting and stopping go through the launcher seam
(:class:`mlx_stack.system.launcher.Launcher`; the front door's runs the control plane in
a short-lived child process) from a worker thread, under the stack lock, with the same pid
files and log writer as `up`: `status`, `down` and the watchdog see a tier the front door
started exactly as one `up` started. The seam is imported only when the routes have an
on-demand tier, so a front door without one never loads it.

A cold start: the guard decides (evicting idle on-demand tiers, least recently used
first), the tier launches, and the requests wait (at most ``COLD_START_S``) for its
health route; then each goes on as usual. A tier that cannot start (no room, exited,
never ready) is skipped: the request falls back along its chain, and the answer says why
in ``x-mlx-stack-fallback-reason``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlx_stack.core.stack import CLOUD
from mlx_stack.gateway.metrics import Metrics
from mlx_stack.gateway.upstream import Pool

if TYPE_CHECKING:
    from mlx_stack.gateway.routes_file import RoutesFile
    from mlx_stack.json_types import JSON
    from mlx_stack.system.launcher import Launcher

log = logging.getLogger("mlx_stack.front_door")

COLD_START_S = 300.0  # a request waits at most this long for its tier to load
READY_POLL_S = 0.05  # how often a starting tier's health route is asked
IDLE_CHECK_S = 1.0
STATE_EVERY_S = 5.0  # run/on-demand.json is rewritten at most this often (and on changes)


@dataclass
class _Tier:
    last_used: float  # time.monotonic()
    last_used_wall: float | None = None  # time.time() of the last request (None: none yet)
    inflight: int = 0
    starting: asyncio.Task[str | None] | None = None
    stopping: asyncio.Task[None] | None = None
    cold_start_s: float | None = None
    cold_starts: int = 0
    evictions: int = 0
    idle_unloads: int = 0
    failed_starts: int = 0

    def as_dict(self) -> dict[str, JSON]:
        return {"last_used": self.last_used_wall, "cold_start_s": self.cold_start_s,
                "cold_starts": self.cold_starts, "evictions": self.evictions,
                "idle_unloads": self.idle_unloads, "failed_starts": self.failed_starts}


class OnDemand:
    """The on-demand tiers of one front door (``home``: the stack's MLX_STACK_HOME)."""

    def __init__(self, home: Path, routes: RoutesFile, metrics: Metrics, *,
                 launcher: Launcher | None = None) -> None:
        from mlx_stack.paths import Paths

        self.paths = Paths(home)
        self.routes = routes  # a RoutesFile: .current.tiers (Upstream), .pools
        self.metrics = metrics
        self.tiers: dict[str, _Tier] = {}
        self._wake_lock = asyncio.Lock()  # one launch (and its evictions) at a time
        self._candidates: frozenset[str] = frozenset()  # evictable during the launch in progress
        self._task: asyncio.Task[None] | None = None
        self._dirty = False
        self._written = 0.0
        self.awake: set[str] = set()  # on-demand tiers last seen running (for fallback order)
        self._launcher = launcher

    # --- state ------------------------------------------------------------------------

    def is_on_demand(self, name: str) -> bool:
        up = self.routes.current.tiers.get(name)
        return up is not None and up.on_demand

    def _state(self, name: str) -> _Tier:
        st = self.tiers.get(name)
        if st is None:
            st = self.tiers[name] = _Tier(last_used=time.monotonic())
        return st

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._idle_loop())
        if any(u.on_demand for u in self.routes.current.tiers.values()):
            loop.run_in_executor(None, _preload)  # the first cold start need not import it

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # --- the request path ---------------------------------------------------------------

    async def ensure(self, name: str, cooling: bool = False, wake: bool = True) -> str | None:
        """Make the tier answer: None when it runs (counted in flight until :meth:`release`),
        else why it cannot (the caller falls back). ``cooling``: its pool is in cool-down
        (it failed); if it still runs it is skipped like any failing tier, if not, started.
        ``wake`` False (probes): a sleeping tier is skipped, not started, and its last use
        is left as it was (a health probe is not use: the watchdog's must not keep it awake;
        release it with ``probe=True``)."""
        st = self._state(name)
        if wake:
            self._touch(st)
        st.inflight += 1  # from now on the idle loop and evictions leave it alone
        self._dirty = True
        try:
            if st.stopping is not None:
                await asyncio.shield(st.stopping)
            if name in self._candidates:  # another tier's launch may be evicting it: wait for it
                async with self._wake_lock:
                    pass
            if st.starting is None and name in self.awake and not cooling:
                return None  # started or seen running here, and nothing failed since
            if st.starting is None:
                running = await asyncio.to_thread(self._service().is_running, self.paths, name)
                if running:
                    self.awake.add(name)
                    if cooling:
                        st.inflight -= 1
                        return "it is failing (cooling down)"
                    return None
                if not wake:
                    st.inflight -= 1
                    return "it is asleep (a probe does not wake it)"
                if st.starting is None:  # (no other request began one meanwhile)
                    st.starting = asyncio.get_running_loop().create_task(self._cold_start(name, st))
            why = await asyncio.shield(st.starting)
        except BaseException:
            st.inflight -= 1
            raise
        if why is not None:
            st.inflight -= 1
            self.awake.discard(name)
        else:
            self.awake.add(name)
        return why

    def fallback_order(self, chain: list[str], lazy: set[str]) -> list[str]:
        """``chain`` with the sleeping on-demand tiers after the other local tiers (still
        before the cloud), except the first (the tier asked for): a fallback goes to a tier
        that runs before one that must load."""
        if len(chain) < 3 or not lazy:
            return chain
        rest = chain[1:]
        asleep = [n for n in rest if n in lazy and n not in self.awake]
        local = [n for n in rest if n not in asleep and n != CLOUD]
        return [chain[0], *local, *asleep, *(n for n in rest if n == CLOUD)]

    def release(self, name: str, probe: bool = False) -> None:
        """The answer is done; ``probe``: it was a health probe's (last use not refreshed)."""
        st = self._state(name)
        st.inflight = max(0, st.inflight - 1)
        if not probe:
            self._touch(st)

    def _touch(self, st: _Tier) -> None:
        """Refresh the tier's last use (what the idle unload counts from): real requests only."""
        st.last_used = time.monotonic()
        st.last_used_wall = time.time()
        self._dirty = True

    def _service(self) -> Launcher:
        """The launcher seam (a :class:`~mlx_stack.system.launcher.ChildLauncher` unless one
        was given), imported on first use."""
        if self._launcher is None:
            from mlx_stack.system.launcher import ChildLauncher

            self._launcher = ChildLauncher()
        return self._launcher

    async def _cold_start(self, name: str, st: _Tier) -> str | None:
        from mlx_stack.system.launcher import CannotStart, NoRoom

        svc = self._service()
        began = time.monotonic()
        try:
            async with self._wake_lock:
                evictable = sorted(
                    (n for n, s in self.tiers.items()
                     if n != name and s.inflight == 0 and s.starting is None and self.is_on_demand(n)),
                    key=lambda n: self.tiers[n].last_used)
                self._candidates = frozenset(evictable)
                try:
                    woken = await asyncio.to_thread(svc.wake, self.paths, name, evictable)
                finally:
                    self._candidates = frozenset()
            for victim in woken.evicted:
                self.awake.discard(victim)
                self._state(victim).evictions += 1
                self.metrics.bump(victim, "evictions")
                log.warning("%s evicted (idle, least recently used) to make room for %s", victim, name)
            # Started by someone else meanwhile (`up --tier`, the watchdog)? It may still be
            # loading: wait for it all the same (one health check when it is ready).
            why = await self._wait_ready(name, woken.pid, woken.start_time, began)
            if woken.already_running:
                return why
        except NoRoom as exc:
            why = f"not enough memory to start it ({exc})"
        except CannotStart as exc:
            why = f"cannot start it ({exc})"
        except Exception as exc:  # never leave the waiting requests hanging
            log.exception("cold start of %s failed", name)
            why = f"cannot start it ({type(exc).__name__}: {exc})"
        finally:
            st.starting = None
        if why is None:
            st.cold_start_s = round(time.monotonic() - began, 3)
            st.cold_starts += 1
            self.metrics.bump(name, "cold_starts")
            log.warning("%s started on demand in %.1f s", name, st.cold_start_s)
        else:
            st.failed_starts += 1
            self.metrics.bump(name, "cold_start_failures")
            log.warning("%s: %s", name, why)
        self._dirty = True
        await self._write_state(force=True)
        return why

    async def _wait_ready(self, name: str, pid: int, start_time: float, began: float) -> str | None:
        svc = self._service()
        pool: Pool | None = self.routes.pools.get(name)
        deadline = began + COLD_START_S
        while True:
            if not svc.process_alive(self.paths, name, pid, start_time):
                await asyncio.to_thread(svc.clear_failed_start, self.paths, name)
                return "it exited while starting"
            pool = self.routes.pools.get(name) or pool
            if pool is not None and await pool.alive(timeout=2.0):
                pool.cooling = False  # a failure before it slept says nothing now
                return None
            if time.monotonic() >= deadline:
                await asyncio.to_thread(svc.clear_failed_start, self.paths, name)
                return f"it was not ready after {COLD_START_S:.0f} s"
            await asyncio.sleep(READY_POLL_S)

    # --- idle unload --------------------------------------------------------------------

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_S)
            with contextlib.suppress(Exception):
                await self._idle_round()

    async def _idle_round(self) -> None:
        if any(st.cold_starts or st.failed_starts for st in self.tiers.values()):
            # Tiers started here are our children: collect any that exited (no zombies).
            await asyncio.to_thread(self._service().reap_children)
        for name, up in list(self.routes.current.tiers.items()):
            if not up.on_demand:
                continue
            st = self._state(name)
            if not self._idle(st, up.idle_unload_s):
                continue
            svc = self._service()
            if not await asyncio.to_thread(svc.is_running, self.paths, name):
                continue
            # A request may have arrived during that await (ensure() trusts `awake` and
            # returns at once): decide again, with no await between this and `stopping`.
            if not self._idle(st, up.idle_unload_s):
                continue
            st.stopping = asyncio.get_running_loop().create_task(self._unload(name, st))
        await self._write_state()

    @staticmethod
    def _idle(st: _Tier, idle_unload_s: float | None) -> bool:
        """Nothing in flight, starting or stopping, and unused for ``idle_unload_s``."""
        if st.inflight or st.starting is not None or st.stopping is not None:
            return False
        return time.monotonic() - st.last_used >= (idle_unload_s or 0)

    async def _unload(self, name: str, st: _Tier) -> None:
        try:
            stopped = await asyncio.to_thread(self._service().put_to_sleep, self.paths, name)
        finally:
            st.stopping = None
        if stopped:
            self.awake.discard(name)
            st.idle_unloads += 1
            self.metrics.bump(name, "idle_unloads")
            self._dirty = True
            log.warning("%s stopped after %.0f s idle (on-demand)", name, time.monotonic() - st.last_used)

    async def _write_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._dirty or (not force and now - self._written < STATE_EVERY_S):
            return
        self._dirty = False
        self._written = now
        doc = {n: st.as_dict() for n, st in self.tiers.items() if self.is_on_demand(n)}
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._service().write_state, self.paths, doc)


def _preload() -> None:
    """Import the launcher seam off the event loop."""
    with contextlib.suppress(Exception):
        importlib.import_module("mlx_stack.system.launcher")
