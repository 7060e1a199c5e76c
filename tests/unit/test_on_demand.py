"""On-demand tiers: stack.yaml fields, the routes document, the front door's manager
(against a recording stand-in of services.on_demand), and status's `sleeping`."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlx_stack.core.front_door import Routes, Upstream, parse_routes
from mlx_stack.core.gateway_config import render_routes
from mlx_stack.core.routing import default_rules
from mlx_stack.core.service_state import ServiceStatus
from mlx_stack.core.stack import (
    DEFAULT_IDLE_UNLOAD_S,
    ON_DEMAND,
    dump_stack,
    format_duration,
    parse_duration,
    parse_stack,
)
from mlx_stack.errors import StateError
from mlx_stack.gateway import on_demand as gw
from mlx_stack.gateway.metrics import Metrics
from mlx_stack.paths import Paths
from mlx_stack.services import on_demand as svc


def _data() -> dict[str, Any]:
    return {
        "schema": 1,
        "gateway": {"host": "127.0.0.1", "port": 4000},
        "fallback_order": ["standard", "coder", "vision"],
        "tiers": [
            {"name": "standard", "model": "org/big", "path": "/m/big", "port": 8001},
            {"name": "coder", "model": "org/code", "path": "/m/code", "port": 8002, "mode": "on-demand",
             "idle-unload": "10m"},
            {"name": "vision", "model": "org/vis", "path": "/m/vis", "port": 8003, "mode": "on-demand"},
        ],
    }


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200), (" 5M ", 300)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "10", "1d", "-5m", "1.5h", "", "m"])
def test_bad_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_format_duration_is_the_shortest_exact_spelling() -> None:
    assert [format_duration(s) for s in (45, 600, 7200, 90)] == ["45s", "10m", "2h", "90s"]


def test_modes_round_trip_and_old_files_stay_resident() -> None:
    stack = parse_stack(_data())
    assert [t.mode for t in stack.tiers] == ["resident", ON_DEMAND, ON_DEMAND]
    assert stack.tier("coder").idle_unload == 600
    vision = stack.tier("vision")
    assert vision.idle_unload == DEFAULT_IDLE_UNLOAD_S and vision.idle_unload_s is None
    assert stack.resident_tiers == ["standard"]
    assert parse_stack(dump_stack(stack)) == stack
    assert dump_stack(stack)["tiers"] == _data()["tiers"]
    old = _data()
    for t in old["tiers"]:
        t.pop("mode", None)
        t.pop("idle-unload", None)
    assert all(not t.on_demand for t in parse_stack(old).tiers)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("mode", "lazy", "tiers[1].mode: 'lazy' is not a mode"),
    ("idle-unload", "soon", "tiers[1].idle-unload: 'soon' is not a duration"),
    ("idle-unload", 0, "is not a duration"),
])
def test_bad_mode_fields_name_the_field(key: str, value: Any, words: str) -> None:
    data = copy.deepcopy(_data())
    data["tiers"][1][key] = value
    with pytest.raises(StateError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_stack(data)


def test_idle_unload_needs_on_demand() -> None:
    data = copy.deepcopy(_data())
    data["tiers"][0]["idle-unload"] = "5m"
    with pytest.raises(StateError, match="only an on-demand tier"):
        parse_stack(data)


def test_routes_document_carries_the_on_demand_fields() -> None:
    ups = [Upstream("standard", "org/big", "http://127.0.0.1:8001"),
           Upstream("coder", "org/code", "http://127.0.0.1:8002", idle_unload_s=30, planned_mb=1500)]
    doc = render_routes(ups, ["standard", "coder"], default_rules(["standard", "coder"]), None)
    assert "on_demand" not in doc["tiers"][0]
    routes = parse_routes(doc)
    assert not routes.tiers["standard"].on_demand
    assert routes.tiers["coder"].on_demand and routes.tiers["coder"].idle_unload_s == 30


# --- the front door's manager, against a recording stand-in --------------------------


@dataclass
class FakeService:
    """Stands in for services.on_demand: records launches and stops, no processes."""

    running: set[str] = field(default_factory=set)
    wakes: list[tuple[str, list[str]]] = field(default_factory=list)
    sleeps: list[str] = field(default_factory=list)
    no_room: set[str] = field(default_factory=set)
    evict: bool = False
    dies: bool = False
    NoRoom = svc.NoRoom
    CannotStart = svc.CannotStart

    def is_running(self, p: Paths, tier: str) -> bool:
        return tier in self.running

    def wake(self, p: Paths, tier: str, evictable: list[str]) -> svc.Woken:
        import time

        time.sleep(0.05)  # a launch takes a while: concurrent requests pile up meanwhile
        self.wakes.append((tier, list(evictable)))
        if tier in self.no_room:
            raise svc.NoRoom("not enough memory: x")
        evicted = [v for v in evictable if v in self.running][:1] if self.evict else []
        self.running -= set(evicted)
        self.running.add(tier)
        return svc.Woken(1234, 1.0, False, evicted)

    def process_alive(self, p: Paths, tier: str, pid: int, start: float) -> bool:
        return not self.dies

    def clear_failed_start(self, p: Paths, tier: str) -> None:
        self.running.discard(tier)

    def put_to_sleep(self, p: Paths, tier: str) -> bool:
        self.sleeps.append(tier)
        self.running.discard(tier)
        return True

    def write_state(self, p: Paths, doc: Any) -> None:
        self.state = doc

    def reap_children(self) -> None:
        pass


class FakePool:
    cooling = False

    async def alive(self, timeout: float = 3.0) -> bool:
        return True


class FakeRoutes:
    def __init__(self, idle: int = 3600) -> None:
        ups = {n: Upstream(n, n, "http://x", idle_unload_s=None if n == "standard" else idle)
               for n in ("standard", "coder", "vision")}
        self.current = Routes(ups, tuple(ups), default_rules(list(ups)))
        self.pools = {n: FakePool() for n in ups}


def _manager(fake: FakeService, routes: FakeRoutes | None = None) -> gw.OnDemand:
    return gw.OnDemand(Path("/nonexistent"), routes or FakeRoutes(), Metrics(), launcher=fake)


def test_concurrent_requests_share_one_start() -> None:
    fake = FakeService()

    async def go() -> list[str | None]:
        m = _manager(fake)
        out = await asyncio.gather(*(m.ensure("coder") for _ in range(5)))
        assert m.tiers["coder"].inflight == 5 and m.tiers["coder"].cold_starts == 1
        for _ in out:
            m.release("coder")
        assert m.tiers["coder"].inflight == 0
        assert 'cold_starts_total{tier="coder"} 1' in m.metrics.text()
        return out

    assert asyncio.run(go()) == [None] * 5
    assert [w[0] for w in fake.wakes] == ["coder"]


def test_no_room_is_a_reason_to_fall_back() -> None:
    fake = FakeService(no_room={"vision"})

    async def go() -> str | None:
        m = _manager(fake)
        why = await m.ensure("vision")
        assert m.tiers["vision"].inflight == 0
        return why

    why = asyncio.run(go())
    assert why is not None and why.startswith("not enough memory")


def test_a_tier_that_dies_while_starting_is_cleared() -> None:
    fake = FakeService(dies=True)
    why = asyncio.run(_manager(fake).ensure("coder"))
    assert why == "it exited while starting" and "coder" not in fake.running


def test_evictable_tiers_are_idle_ones_least_recently_used_first() -> None:
    fake = FakeService()

    async def go() -> None:
        m = _manager(fake)
        m.tiers.clear()
        for name in ("vision", "coder"):  # vision used first, so least recently
            assert await m.ensure(name) is None
            m.release(name)
        fake.running.discard("coder")  # coder asleep again (as the idle loop leaves it)
        m.awake.discard("coder")
        busy = await m.ensure("vision")  # a request in flight on vision: not evictable
        assert busy is None
        assert await m.ensure("coder") is None
        assert fake.wakes[-1] == ("coder", [])
        m.release("vision")
        m.release("coder")
        fake.running.discard("coder")
        m.awake.discard("coder")
        fake.evict = True
        assert await m.ensure("coder") is None
        assert fake.wakes[-1] == ("coder", ["vision"])
        assert m.tiers["vision"].evictions == 1

    asyncio.run(go())


def test_idle_tiers_are_unloaded_but_not_busy_or_resident_ones() -> None:
    fake = FakeService(running={"standard", "coder", "vision"})

    async def go() -> None:
        m = _manager(fake, FakeRoutes(idle=0))
        assert await m.ensure("vision") is None  # in flight: stays
        await m._idle_round()
        await asyncio.sleep(0.05)
        assert fake.sleeps == ["coder"]
        assert m.tiers["coder"].idle_unloads == 1

    asyncio.run(go())


def test_status_shows_sleeping_with_last_use(tmp_path: Path) -> None:
    p = Paths(tmp_path)
    p.run_dir.mkdir(parents=True)
    svc.write_state(p, {"coder": {"last_used": 1000.0, "cold_start_s": 2.5}})
    stack = parse_stack(_data())
    rows = [ServiceStatus("standard", "tier", "stopped", 8001),
            ServiceStatus("coder", "tier", "stopped", 8002),
            ServiceStatus("vision", "tier", "healthy", 8003, pid=5)]
    out = {s.name: s for s in svc.overlay(p, stack, rows)}
    assert out["standard"].state == "stopped" and out["standard"].mode is None
    assert out["coder"].state == "sleeping" and out["coder"].last_used == 1000.0
    assert out["coder"].cold_start_s == 2.5 and out["coder"].idle_unload_s == 600
    assert out["vision"].state == "healthy" and out["vision"].mode == ON_DEMAND


# --- setup's proposal and flags ------------------------------------------------------


def test_propose_on_demand_keeps_the_first_tiers_that_fit() -> None:
    from mlx_stack.core.stack_change import propose_on_demand

    plans = {"standard": 6000, "fast": 2000, "longctx": 5000, "coder": 1000}
    order = ["standard", "fast", "longctx", "coder"]
    assert propose_on_demand(order, plans, 9000) == ["longctx"]
    assert propose_on_demand(order, plans, 20000) == []
    assert propose_on_demand(order, plans, 1000) == ["fast", "longctx", "coder"]  # the first always stays
    assert propose_on_demand(order, plans, 7000, on_demand=["fast"]) == ["longctx"]


def test_setup_asks_before_making_tiers_on_demand(isolated_home: Paths) -> None:
    from mlx_stack.core.memory_plan import ServingProfile
    from mlx_stack.core.stack import Stack, Tier
    from mlx_stack.services import setup
    from mlx_stack.services.serving_plan import Planned
    from tests.unit.test_setup_service import RecordingUI

    prof = ServingProfile(context=4096, need_mb=3000, cache_memory_mb=0, gpu_memory_utilization=0.2,
                          max_num_seqs=4)
    stack = Stack(tuple(Tier(n, n, "/m", 8100 + i, serving=prof) for i, n in enumerate(("a", "b", "c"))),
                  ("a", "b", "c"), memory_budget_mb=9000)
    planned = Planned(stack, 7000 * 1024 * 1024, "test", over_budget=True)
    no = RecordingUI(answer=False)
    assert setup._propose_on_demand(planned, no, ask=True) is None
    assert "make c on-demand" in no.asked[0]
    yes = RecordingUI(answer=True)
    out = setup._propose_on_demand(planned, yes, ask=True)
    assert out is not None and [t.mode for t in out.tiers] == ["resident", "resident", "on-demand"]
    assert out.memory_budget_mb == 9000  # a + b resident + c, the largest on-demand tier
    quiet = RecordingUI(interactive=False)
    out = setup._propose_on_demand(planned, quiet, ask=False)
    assert out is not None and out.tier("c").on_demand and "c: on-demand" in quiet.said[0]


def test_setup_flags_for_on_demand() -> None:
    from mlx_stack.core.stack_change import SetupFlags, check_flags
    from mlx_stack.errors import UsageError

    check_flags(SetupFlags(add=("m",), as_=("coder",), on_demand=True, idle_unload="30s"))
    for flags, words in ((SetupFlags(on_demand=True), "apply to the tiers of --add"),
                         (SetupFlags(add=("m",), idle_unload="5m"), "--idle-unload needs --on-demand"),
                         (SetupFlags(add=("m",), on_demand=True, idle_unload="soon"),
                          "invalid --idle-unload")):
        with pytest.raises(UsageError, match=words):
            check_flags(flags)


def test_fallbacks_try_running_tiers_before_sleeping_ones() -> None:
    m = _manager(FakeService())
    lazy = {"coder", "vision"}
    m.awake = {"vision"}
    assert m.fallback_order(["coder", "standard", "vision"], lazy) == ["coder", "standard", "vision"]
    assert m.fallback_order(["standard", "coder", "vision", "fast", "cloud"], lazy) == \
        ["standard", "vision", "fast", "coder", "cloud"]


def test_the_watchdog_does_not_start_a_sleeping_tier(isolated_home: Paths) -> None:
    from mlx_stack.core.watchdog import ActionKind, Policy, decide
    from mlx_stack.services import stack_store, watchdog

    stack = parse_stack(_data())
    stack_store.save(isolated_home, stack)
    opts = watchdog.Options(Policy())
    obs = watchdog.observe(isolated_home, stack, {}, 0.0, opts, {})
    assert not obs["coder"].wanted and not obs["vision"].wanted  # asleep: no pid file
    decision = decide({}, obs, 0.0, opts.policy)
    assert [a for a in decision.actions if a.kind is ActionKind.START] == []


def test_a_tier_stopped_from_outside_is_checked_again_after_a_failure() -> None:
    fake = FakeService()

    async def go() -> None:
        m = _manager(fake)
        assert await m.ensure("coder") is None
        m.release("coder")
        fake.running.discard("coder")  # `down --tier coder`: the front door does not know yet
        assert await m.ensure("coder") is None and len(fake.wakes) == 1  # trusted: no check
        m.release("coder")
        m.awake.discard("coder")  # what a failed attempt on it does (chain.AttemptChain)
        assert await m.ensure("coder", cooling=True) is None
        assert len(fake.wakes) == 2  # checked, found asleep, started again

    asyncio.run(go())


def test_idle_unload_decides_again_after_its_await() -> None:
    """A request that arrives while the idle round asks whether the tier runs (an await)
    is in flight when the round resumes: the tier is not put to sleep under it."""
    import threading

    class SlowCheck(FakeService):
        def __init__(self, running: set[str]) -> None:
            super().__init__(running=running)
            self.checking = threading.Event()

        def is_running(self, p: Paths, tier: str) -> bool:
            self.checking.set()
            import time

            time.sleep(0.1)
            return super().is_running(p, tier)

    fake = SlowCheck(running={"coder"})

    async def go() -> None:
        m = _manager(fake, FakeRoutes(idle=0))
        assert await m.ensure("coder") is None  # seen running: `awake`
        m.release("coder")
        fake.checking.clear()
        round_ = asyncio.create_task(m._idle_round())
        while not fake.checking.is_set():
            await asyncio.sleep(0.005)
        assert await m.ensure("coder") is None  # trusts `awake`: no await, in flight at once
        await round_
        await asyncio.sleep(0.05)
        assert fake.sleeps == [] and "coder" in fake.running
        m.release("coder")
        await m._idle_round()  # idle now: unloaded
        await asyncio.sleep(0.05)
        assert fake.sleeps == ["coder"]

    asyncio.run(go())


def test_health_probes_do_not_count_as_use() -> None:
    """The watchdog's probes (ensure(wake=False) ... release(probe=True)) leave the last
    use alone, so an idle on-demand tier still goes to sleep; a real request refreshes it."""
    fake = FakeService(running={"coder"})

    async def go() -> None:
        m = _manager(fake, FakeRoutes(idle=60))
        assert await m.ensure("coder") is None
        m.release("coder")
        st = m.tiers["coder"]
        st.last_used -= 61  # a minute passed since the last real request
        used, wall = st.last_used, st.last_used_wall
        for _ in range(3):
            assert await m.ensure("coder", wake=False) is None
            m.release("coder", probe=True)
        assert (st.last_used, st.last_used_wall) == (used, wall)
        await m._idle_round()
        await asyncio.sleep(0.05)
        assert fake.sleeps == ["coder"]
        fake.running.add("coder")
        m.awake.add("coder")
        st.last_used -= 61
        assert await m.ensure("coder") is None  # a real request: counts
        m.release("coder")
        await m._idle_round()
        await asyncio.sleep(0.05)
        assert fake.sleeps == ["coder"]

    asyncio.run(go())
