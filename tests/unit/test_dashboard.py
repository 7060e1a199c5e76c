"""The dashboard's numbers (pure) and the front door's page and JSON view, in process.

The front door is driven as the ASGI callable it is; its upstreams are a real tiny HTTP
server answering /health (a live tier) and a closed port (a dead one). The live path
(real vllm-mlx, a real browser) is tests/integration/test_dashboard_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlx_stack.core import dashboard as core
from mlx_stack.core.front_door import Upstream
from mlx_stack.core.gateway_config import render_routes
from mlx_stack.core.metrics_text import BUCKETS
from mlx_stack.core.routing import default_rules
from mlx_stack.gateway.app import FrontDoor
from mlx_stack.gateway.routes_file import RoutesFile
from mlx_stack.system import pidfile, ports

KEY = "k" * 32


def _buckets(**at: int) -> tuple[int, ...]:
    out = [0] * len(BUCKETS)
    for bound, n in at.items():
        out[BUCKETS.index(float(bound.removeprefix("b").replace("_", ".")))] = n
    return tuple(out)


def _tier(requests: int = 0, tokens: int = 0, ttft: tuple[int, ...] | None = None) -> core.TierSample:
    return core.TierSample((requests, tokens, 0, 0, 0, 0), ttft or (0,) * len(BUCKETS))


# --- pure -------------------------------------------------------------------------------


def test_p50_interpolates_inside_the_bucket() -> None:
    assert core.p50((0,) * len(BUCKETS)) is None
    # 4 answers between 0.1 and 0.25 s: the median is half-way through that bucket
    assert core.p50(_buckets(b0_25=4)) == pytest.approx(0.175)
    # 3 fast, 1 slow: the median sits in the fast bucket
    assert (core.p50(_buckets(b0_05=3, b5_0=1)) or 1.0) < 0.05
    inf = [0] * len(BUCKETS)
    inf[-1] = 2
    assert math.isfinite(core.p50(inf) or 0)


def test_rates_use_the_sample_about_ten_seconds_back() -> None:
    history = [core.Sample(100.0, {"fast": _tier(0, 0)}), core.Sample(105.0, {"fast": _tier(10, 100)}),
               core.Sample(110.0, {"fast": _tier(20, 400)})]
    live = _tier(40, 1000, _buckets(b0_25=2))
    r = core.rates(live, history, "fast", now=115.0, started_at=90.0)
    assert r["requests_per_s"] == pytest.approx(3.0)  # (40 - 10) / (115 - 105)
    assert r["tokens_per_s"] == pytest.approx(90.0)
    assert r["ttft_p50_s"] == pytest.approx(0.175)
    # a tier never sampled counts from zero since the front door started
    assert core.rates(_tier(5), [], "new", now=100.0, started_at=90.0)["requests_per_s"] == pytest.approx(0.5)


def test_series_gives_one_point_per_interval_and_none_without_requests() -> None:
    history = [core.Sample(0.0, {"a": _tier(0, 0)}), core.Sample(5.0, {"a": _tier(1, 50, _buckets(b0_1=1))}),
               core.Sample(10.0, {"a": _tier(1, 50, _buckets(b0_1=1))})]
    s = core.series(history, ["a", "b"])
    assert s["t"] == [5.0, 10.0]
    assert s["tiers"]["a"]["tokens_per_s"] == [10.0, 0.0]
    assert s["tiers"]["a"]["ttft_p50_s"][1] is None and s["tiers"]["a"]["ttft_p50_s"][0] is not None
    assert s["tiers"]["b"]["tokens_per_s"] == [0.0, 0.0]


def test_states_as_status_words_them_and_any_watchdog_state_passes_through() -> None:
    assert core.tier_state(has_record=True, process_alive=True, answers=True) == ("healthy", "")
    assert core.tier_state(has_record=True, process_alive=False, answers=False)[0] == "crashed"
    assert core.tier_state(has_record=True, process_alive=True, answers=False)[0] == "down"
    assert core.tier_state(has_record=False, process_alive=None, answers=False)[0] == "stopped"
    slept = core.tier_state(has_record=True, process_alive=False, answers=False,
                            watchdog={"state": "sleeping", "reason": "idle 10 min"})
    assert slept == ("sleeping", "idle 10 min")
    assert core.state_class("sleeping") == "warn"
    assert core.state_class("crashed") == "down"
    assert core.state_class("something-new") == "other"


# --- the front door, in process -------------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status":"ok"}'
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _home(tmp_path: Path, live_port: int) -> Path:
    """A routes file (live tier `fast`, dead tier `standard`), the context file, pid files."""
    dead = ports.free_port()
    gen = tmp_path / "generated"
    run = tmp_path / "run"
    gen.mkdir()
    run.mkdir()
    tiers = [Upstream("standard", "org/std-model", f"http://127.0.0.1:{dead}"),
             Upstream("fast", "org/fast-model", f"http://127.0.0.1:{live_port}")]
    doc = render_routes(tiers, ["standard", "fast"], default_rules(["standard", "fast"]), None)
    (gen / "front-door.json").write_text(json.dumps(doc))
    (gen / "dashboard.json").write_text(json.dumps({
        "schema": 1, "home": str(tmp_path), "hardware": {"label": "Test machine", "memory_gb": 24.0},
        "budget": {"bytes": 8 << 30, "planned_bytes": 3 << 30},
        "planned_bytes": {"standard": 2 << 30, "fast": 1 << 30}}))
    pidfile.write(run, pidfile.record_for("fast", os.getpid(), ["python"], live_port))
    # standard: a record of a process that is gone (pid recycled or killed)
    pidfile.write(run, pidfile.PidRecord("standard", 999_999, 1.0, ("vllm",), dead))
    return gen / "front-door.json"


async def _call(app: FrontDoor, path: str, headers: list[tuple[bytes, bytes]] | None = None,
                method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "method": method, "headers": headers or [], "client": ("t", 1)}
    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def _run(routes_path: Path, fn: Any) -> Any:
    async def main() -> Any:
        app = FrontDoor(RoutesFile(routes_path, KEY), KEY)
        app.routes.start()
        try:
            return await fn(app)
        finally:
            await app.dashboard.stop()
            await app.routes.stop()

    return asyncio.run(main())


AUTH = [(b"authorization", f"Bearer {KEY}".encode())]


def test_the_page_is_served_without_the_key_and_holds_no_data(tmp_path: Path, health_server: int) -> None:
    routes = _home(tmp_path, health_server)

    async def go(app: FrontDoor) -> Any:
        return [await _call(app, p) for p in ("/", "/dashboard.js", "/dashboard.css")]

    (page, js, css) = _run(routes, go)
    assert page[0] == 200 and page[1][b"content-type"].startswith(b"text/html")
    assert b"default-src 'none'" in page[1][b"content-security-policy"]
    assert b"org/fast-model" not in page[2] and b'type="password"' in page[2]
    assert js[0] == 200 and b"sessionStorage" in js[2] and b"Authorization" in js[2]
    assert css[0] == 200 and b"prefers-color-scheme: dark" in css[2]


def test_the_view_needs_the_key(tmp_path: Path, health_server: int) -> None:
    routes = _home(tmp_path, health_server)

    async def go(app: FrontDoor) -> Any:
        return (await _call(app, "/api/dashboard"),
                await _call(app, "/api/dashboard", [(b"authorization", b"Bearer wrong-key-wrong-key")]))

    none, wrong = _run(routes, go)
    assert none[0] == 401 and wrong[0] == 401
    assert b"fast" not in none[2]


def test_the_view_shows_states_memory_counts_and_fallbacks(tmp_path: Path, health_server: int) -> None:
    routes = _home(tmp_path, health_server)

    async def go(app: FrontDoor) -> Any:
        m = app.metrics
        m.bump("fast", "requests", 3)
        m.bump("fast", "generated_tokens", 30)
        m.observe("fast", "ttft_seconds", 0.2)
        m.bump("standard", "fallbacks_out")
        m.bump("fast", "fallbacks_in")
        m.fallback("standard", "fast", "standard: connection refused")
        app.dashboard.sample()
        status, headers, body = await _call(app, "/api/dashboard", AUTH)
        again = await _call(app, "/api/dashboard", AUTH)
        return status, headers, json.loads(body), again[2] == body

    status, headers, view, cached = _run(routes, go)
    assert status == 200 and headers[b"cache-control"] == b"no-store"
    assert cached  # a second poll within a second gets the same view
    tiers = {t["name"]: t for t in view["tiers"]}
    assert tiers["fast"]["state"] == "healthy" and tiers["fast"]["state_class"] == "up"
    assert tiers["fast"]["model"] == "org/fast-model"
    assert tiers["fast"]["rss_bytes"] > 0 and tiers["fast"]["planned_bytes"] == 1 << 30
    assert tiers["fast"]["requests"] == 3 and tiers["fast"]["fallbacks_in"] == 1
    assert tiers["fast"]["ttft_p50_s"] == pytest.approx(0.175)
    assert tiers["standard"]["state"] == "crashed" and tiers["standard"]["rss_bytes"] is None
    assert tiers["standard"]["fallbacks_out"] == 1
    assert view["hardware"]["label"] == "Test machine" and view["budget"]["bytes"] == 8 << 30
    assert view["events"][0]["kind"] == "fallback" and "refused" in view["events"][0]["reason"]
    assert set(view["history"]["tiers"]) == {"standard", "fast"}


def test_a_new_process_start_in_a_pid_file_is_a_restart(tmp_path: Path, health_server: int) -> None:
    routes = _home(tmp_path, health_server)

    async def go(app: FrontDoor) -> Any:
        app.dashboard.sample()
        rec = pidfile.read(tmp_path / "run", "standard")
        assert rec is not None
        pidfile.write(tmp_path / "run", pidfile.PidRecord("standard", rec.pid, 2.0, rec.cmdline, rec.port))
        app.dashboard.sample()
        return list(app.dashboard.restarts)

    (event,) = _run(routes, go)
    assert event["tier"] == "standard" and event["kind"] == "restart"


def test_the_same_fallback_again_is_one_event_with_a_count() -> None:
    from mlx_stack.gateway.metrics import Metrics

    m = Metrics()
    for _ in range(5):
        m.fallback("fast", "standard", "fast is cooling down after a failure")
    m.fallback("fast", "standard", "fast: connection refused")
    assert [(e["reason"], e["count"]) for e in m.events] == [
        ("fast is cooling down after a failure", 5), ("fast: connection refused", 1)]
    for i in range(200):
        m.fallback("fast", None, f"reason {i}")
    assert len(m.events) == 50


def test_history_is_bounded(tmp_path: Path, health_server: int) -> None:
    routes = _home(tmp_path, health_server)

    async def go(app: FrontDoor) -> int:
        for i in range(core.HISTORY_LEN + 50):
            app.dashboard.sample(now=float(i))
        return len(app.dashboard.history)

    assert _run(routes, go) == core.HISTORY_LEN


def test_an_on_demand_tier_that_is_not_running_shows_as_sleeping(tmp_path: Path, health_server: int) -> None:
    routes = _home(tmp_path, health_server)
    (tmp_path / "run" / "standard.pid").unlink()  # not running, on purpose

    class OnDemandTiers:  # the front door's on-demand bookkeeping, as the view asks it
        def is_on_demand(self, name: str) -> bool:
            return name == "standard"

    async def go(app: FrontDoor) -> Any:
        app.dashboard.on_demand = OnDemandTiers()
        return json.loads((await _call(app, "/api/dashboard", AUTH))[2])

    tiers = {t["name"]: t for t in _run(routes, go)["tiers"]}
    assert tiers["standard"]["state"] == "sleeping" and tiers["standard"]["state_class"] == "warn"
    assert tiers["fast"]["state"] == "healthy"
