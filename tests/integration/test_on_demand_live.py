"""On-demand tiers on a real stack: the front door starts them, unloads them, evicts them.

One stack per module (demo models, real vllm-mlx, the real front door; no cloud):

- ``standard``: resident (started by `up`);
- ``fast``: on-demand, idle-unload 3 s;
- ``coder``: on-demand (a named tier beyond the standard three), idle-unload 1 h;
- ``huge``: on-demand, its plan alone larger than the budget (it can never start).

The memory budget (``memory_budget_mb``) holds exactly two tiers' plans, so ``standard``
plus one on-demand tier fit. The tests run in file order and build on each other.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import openai
import psutil
import pytest

from mlx_stack.core.stack import ON_DEMAND
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_store
from mlx_stack.system import pidfile, ports, secrets
from tests.helpers import run_cli, stack_processes, wait_for

pytestmark = pytest.mark.integration

UP_DEADLINE_S = 420
IDLE_S = 3
DEBUG_MODULES = "MLX_STACK_GATEWAY_DEBUG_MODULES"
# The control plane's modules: the front door reaches tier processes only through the
# launcher seam (system/launcher.py), which runs them in a child process.
CONTROL_PLANE = ("mlx_stack.services", "mlx_stack.cli")


@dataclass
class Live:
    home: Paths
    key: str
    endpoint: str

    def client(self, timeout: float = 300) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.endpoint, api_key=self.key, max_retries=0, timeout=timeout)

    def record(self, tier: str) -> pidfile.PidRecord | None:
        rec = pidfile.read(self.home.run_dir, tier)
        return rec if rec is not None and pidfile.is_ours(rec) else None

    def metrics(self) -> str:
        r = httpx.get(self.endpoint.removesuffix("/v1") + "/metrics",
                      headers={"authorization": f"Bearer {self.key}"}, timeout=10)
        return r.text

    def counter(self, name: str, tier: str) -> int:
        line = f'mlx_stack_gateway_{name}_total{{tier="{tier}"}} '
        for row in self.metrics().splitlines():
            if row.startswith(line):
                return int(row[len(line):])
        return 0

    def states(self) -> dict[str, Any]:
        return {s.name: s for s in lifecycle.status(self.home).services}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = Paths(tmp_path_factory.mktemp("ondemand") / "home")
    try:
        r = run_cli(home, "setup", "--demo", "--no-start", timeout=UP_DEADLINE_S)
        assert r.returncode == 0, r.stderr
        stack = stack_store.load(home)
        standard, fast = stack.tier("standard"), stack.tier("fast")
        assert standard.serving is not None and fast.serving is not None
        tiers = (
            replace(standard, port=ports.free_port()),
            replace(fast, port=ports.free_port(), mode=ON_DEMAND, idle_unload_s=IDLE_S),
            replace(fast, name="coder", port=ports.free_port(), mode=ON_DEMAND, idle_unload_s=3600),
            replace(fast, name="huge", port=ports.free_port(), mode=ON_DEMAND,
                    serving=replace(fast.serving, need_mb=fast.serving.need_mb * 10)),
        )
        budget = standard.serving.planned_mb + fast.serving.planned_mb
        stack = replace(stack, tiers=tiers, fallback_order=("standard", "fast", "coder", "huge"),
                        gateway=replace(stack.gateway, port=ports.free_port()), memory_budget_mb=budget,
                        routing=None)
        stack_store.save(home, stack)
        os.environ[DEBUG_MODULES] = "1"  # the front door lists what it loaded (see the layer test below)
        try:
            r = run_cli(home, "up", timeout=UP_DEADLINE_S)
        finally:
            del os.environ[DEBUG_MODULES]
        assert r.returncode == 0, r.stderr
        yield Live(home, secrets.read_secret(home, secrets.GATEWAY_KEY) or "", lifecycle.endpoint(stack))
    finally:
        lifecycle.down(home, grace=5)
        for proc in stack_processes(home):  # a safety net: never leave servers behind
            proc.kill()


def _chat(live: Live, model: str, **kw: Any) -> Any:
    return live.client().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4, **kw)


def test_up_starts_only_the_resident_tier(live: Live) -> None:
    assert live.record("standard") is not None
    for name in ("fast", "coder", "huge"):
        assert live.record(name) is None
    r = run_cli(live.home, "status", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {s["name"]: s for s in json.loads(r.stdout)["services"]}
    assert rows["standard"]["state"] == "healthy" and rows["standard"]["mode"] is None
    for name in ("fast", "coder", "huge"):
        assert rows[name]["state"] == "sleeping", rows[name]
        assert rows[name]["mode"] == "on-demand" and rows[name]["last_used"] is None
    assert rows["fast"]["idle_unload_s"] == IDLE_S


def test_first_request_starts_the_tier_and_concurrent_ones_share_the_start(live: Live) -> None:
    results: list[Any] = []
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            with live.client().chat.completions.with_streaming_response.create(
                    model="fast", messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                    stream=True) as resp:
                results.append((resp.headers, [c for c in resp.iter_lines() if c]))
        except BaseException as exc:  # reported below
            errors.append(exc)

    def plain() -> None:
        try:
            results.append((_chat(live, "fast").headers, None))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (stream, plain, plain)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=360)
    assert not errors, errors
    assert len(results) == 3
    for headers, _ in results:
        assert headers["x-mlx-stack-tier"] == "fast"  # answered by the tier it asked for
    chunks = next(lines for _, lines in results if lines is not None)
    assert chunks[-1] == "data: [DONE]"
    assert any("x-mlx-stack-cold-start" in h for h, _ in results)
    assert live.counter("cold_starts", "fast") == 1  # one start for the three requests
    assert live.record("fast") is not None
    # Warm now: no cold start on the next request.
    assert "x-mlx-stack-cold-start" not in _chat(live, "fast").headers


def test_after_a_cold_start_the_front_door_has_loaded_no_control_plane_module(live: Live) -> None:
    """A layer rule about what a process runs, not what its files import: the front door
    that has just started ``fast`` on demand (the test above), and evicted or stopped
    nothing yet, has not loaded services.service_control, serving_plan, gateway_config,
    dashboard, watchdog_state, on_demand (or any other services or CLI module)."""
    assert live.counter("cold_starts", "fast") >= 1
    r = httpx.get(live.endpoint.removesuffix("/v1") + "/debug/modules",
                  headers={"authorization": f"Bearer {live.key}"}, timeout=10)
    assert r.status_code == 200, r.text
    loaded = r.json()["modules"]
    assert "mlx_stack.gateway.on_demand" in loaded and "mlx_stack.system.launcher" in loaded
    assert [m for m in loaded if m.startswith(CONTROL_PLANE)] == []


def test_idle_unload_stops_the_tier_and_frees_its_process(live: Live) -> None:
    rec = live.record("fast")
    assert rec is not None
    wait_for(lambda: not psutil.pid_exists(rec.pid) or psutil.Process(rec.pid).status() == "zombie",
             60, "fast to be unloaded after 3 s idle")
    wait_for(lambda: live.record("fast") is None and pidfile.read(live.home.run_dir, "fast") is None, 30,
             "fast's pid file to go")
    s = wait_for(lambda: (st := live.states()["fast"]).last_used is not None and st, 30,
                 "fast's last use in status")
    assert s.state == "sleeping" and s.pid is None
    assert s.cold_start_s is not None and s.cold_start_s > 0
    assert live.counter("idle_unloads", "fast") == 1
    assert live.record("standard") is not None  # resident: never unloaded


def test_a_second_on_demand_tier_evicts_the_idle_one(live: Live) -> None:
    coder = _chat(live, "coder")
    assert coder.headers["x-mlx-stack-tier"] == "coder"
    coder_rec = live.record("coder")
    assert coder_rec is not None
    # The budget holds standard + one more: fast must evict coder (idle, on-demand).
    fast = _chat(live, "fast")
    assert fast.headers["x-mlx-stack-tier"] == "fast"
    assert "x-mlx-stack-cold-start" in fast.headers
    assert live.record("coder") is None
    assert not psutil.pid_exists(coder_rec.pid) or psutil.Process(coder_rec.pid).status() == "zombie"
    assert live.counter("evictions", "coder") == 1
    assert live.record("standard") is not None  # resident tiers are never evicted
    assert live.states()["coder"].state == "sleeping"


def test_a_tier_that_cannot_fit_falls_back_with_the_reason(live: Live) -> None:
    before = live.record("fast")
    r = _chat(live, "huge")
    assert r.headers["x-mlx-stack-tier"] != "huge"
    assert r.headers["x-mlx-stack-route"] == "fallback"
    assert "huge: not enough memory" in r.headers["x-mlx-stack-fallback-reason"]
    assert r.parse().choices[0].message.content is not None
    assert live.record("huge") is None
    if before is not None:  # an idle on-demand tier is not stopped for a start that cannot fit anyway
        assert live.record("fast") is not None or live.counter("idle_unloads", "fast") >= 2
    assert live.counter("cold_start_failures", "huge") >= 1


def test_kill_9_during_a_cold_start_falls_back_and_the_next_request_restarts(live: Live) -> None:
    wait_for(lambda: live.record("fast") is None, 60, "fast to be unloaded (idle)")
    box: dict[str, Any] = {}

    def ask() -> None:
        try:
            box["response"] = _chat(live, "coder")
        except openai.APIError as exc:  # a clean error is allowed; a hang is not
            box["error"] = exc

    t = threading.Thread(target=ask)
    t.start()
    rec = wait_for(lambda: pidfile.read(live.home.run_dir, "coder"), 60, "coder's cold start to begin")
    os.kill(rec.pid, signal.SIGKILL)
    t.join(timeout=120)
    assert not t.is_alive(), "the request hung after its tier was killed while starting"
    if "response" in box:
        assert box["response"].headers["x-mlx-stack-tier"] != "coder"
        assert "coder:" in box["response"].headers["x-mlx-stack-fallback-reason"]
    wait_for(lambda: pidfile.read(live.home.run_dir, "coder") is None, 30,
             "the failed start's pid file to go")
    assert live.states()["coder"].state == "sleeping"
    again = _chat(live, "coder")
    assert again.headers["x-mlx-stack-tier"] == "coder"
    assert "x-mlx-stack-cold-start" in again.headers


def test_down_stops_on_demand_tiers_too(live: Live) -> None:
    assert live.record("coder") is not None
    r = run_cli(live.home, "down", timeout=120)
    assert r.returncode == 0, r.stderr
    assert not list(live.home.run_dir.glob("*.pid"))
    assert [p for p in stack_processes(live.home) if "vllm-mlx" in " ".join(p.cmdline())] == []
