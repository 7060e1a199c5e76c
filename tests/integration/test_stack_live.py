"""The real stack: `setup --demo`, three vllm-mlx tiers and the LiteLLM gateway.

One stack per module (starting it is the expensive part); the tests run in file
order and the later ones break it on purpose (kill -9, cloud fallback, down).
The only fake is the cloud stand-in: a small OpenAI-compatible server playing
OpenRouter, so the cloud group can be tested offline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import openai
import psutil
import pytest
from typer.testing import CliRunner

from mlx_stack.cli.app import app
from mlx_stack.core.stack import Cloud
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_store
from mlx_stack.services.demo_models import build_scripted_model
from mlx_stack.system import pidfile, ports, processes, secrets
from tests.integration.cloud_standin import CloudStandIn, cloud_standin

pytestmark = pytest.mark.integration

CLOUD_KEY = "sk-or-v1-test-stand-in-key"
CLOUD_TEXT = "hello from the cloud stand-in"
TOOLS = [{
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather for a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}]
TOOL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
UP_DEADLINE_S = 420


@dataclass
class Live:
    home: Paths
    key: str
    endpoint: str
    up_outputs: list[str] = field(default_factory=list)
    up_seconds: float = 0.0
    pgids: set[int] = field(default_factory=set)
    cloud: CloudStandIn | None = None

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.endpoint, api_key=key or self.key, max_retries=0, timeout=60)

    def pid(self, service: str) -> int:
        record = pidfile.read(self.home.run_dir, service)
        assert record is not None, f"no pid file for {service}"
        return record.pid


def _cli(home: Paths, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MLX_STACK_HOME": str(home.home)}
    return subprocess.Popen([sys.executable, "-m", "mlx_stack", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _stack_processes(home: Paths) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and str(home.home) in " ".join(
                    proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = Paths(tmp_path_factory.mktemp("live") / "home")
    live = None
    with cloud_standin(CLOUD_TEXT) as cloud:
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("MLX_STACK_HOME", str(home.home))
                mp.setenv("NO_COLOR", "1")
                r = CliRunner().invoke(app, ["setup", "--demo", "--no-start"], catch_exceptions=False)
                assert r.exit_code == 0, r.stderr
            # Dynamic ports (never assume 4000/8100 are free) and the cloud stand-in.
            stack = stack_store.load(home)
            # longctx serves the scripted model: a real tool call through server and gateway.
            tool_model = build_scripted_model(home.models_dir / "tool-caller", TOOL_TEXT)
            tiers = tuple(
                replace(t, port=ports.free_port(), path=str(tool_model) if t.name == "longctx" else t.path)
                for t in stack.tiers
            )
            stack = replace(stack, tiers=tiers, gateway=replace(stack.gateway, port=ports.free_port()),
                            cloud=Cloud(model="stand-in/model", base_url=cloud.base_url))
            stack_store.save(home, stack)
            secrets.write_secret(home, secrets.OPENROUTER_KEY, CLOUD_KEY)

            start = time.monotonic()
            first, second = _cli(home, "up"), _cli(home, "up")  # two concurrent `up`
            outputs = []
            for proc in (first, second):
                _out, err = proc.communicate(timeout=UP_DEADLINE_S)
                assert proc.returncode == 0, err
                outputs.append(err)
            live = Live(home, secrets.read_secret(home, secrets.GATEWAY_KEY) or "",
                        lifecycle.endpoint(stack), outputs, time.monotonic() - start, cloud=cloud)
            live.pgids = {live.pid(s) for s in stack.services}
            yield live
        finally:
            lifecycle.down(home, grace=5)
            for proc in _stack_processes(home):  # a safety net: never leave servers behind
                proc.kill()


@pytest.fixture
def run() -> Callable[..., Any]:
    runner = CliRunner()

    def _run(*args: str) -> Any:
        return runner.invoke(app, list(args), catch_exceptions=False)

    return _run


@pytest.fixture
def use_home(live: Live, monkeypatch: pytest.MonkeyPatch) -> Live:
    monkeypatch.setenv("MLX_STACK_HOME", str(live.home.home))
    return live


def test_two_concurrent_ups_make_one_stack(live: Live) -> None:
    started = [o for o in live.up_outputs if "started" in o]
    waited = [o for o in live.up_outputs if "already running, nothing changed" in o]
    assert len(started) == 1 and len(waited) == 1, live.up_outputs
    assert "another up/down is running: waiting" in waited[0]
    assert "standard answered a completion after" in started[0]
    procs = _stack_processes(live.home)
    servers = [p for p in procs if "vllm-mlx" in " ".join(p.cmdline())]
    gateways = [p for p in procs if "litellm" in " ".join(p.cmdline()) and "logwriter" not in " ".join(
        p.cmdline())]
    assert len(servers) == 3 and len(gateways) == 1
    print(f"\nup (3 tiers + gateway, under a concurrent second up): {live.up_seconds:.1f} s")


def test_status_shows_every_service_healthy(live: Live) -> None:
    report = lifecycle.status(live.home)
    states = {s.name: s.state for s in report.services}
    assert states == {"standard": "healthy", "fast": "healthy", "longctx": "healthy", "gateway": "healthy"}
    models = {s.name: s.model for s in report.services}
    assert models["fast"] == "mlx-stack/demo-fast"
    assert report.gateway_key == secrets.mask(live.key) and live.key not in json.dumps(report.as_dict())
    assert all(s.pid and s.uptime_s is not None for s in report.services)


def test_doctor_on_the_running_stack(use_home: Live, run, tmp_path) -> None:
    report = tmp_path / "doctor.json"
    r = run("doctor", "--json", "--report", str(report))
    found = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    services = {k: c for k, c in found.items() if k.startswith("service:")}
    assert set(services) == {"service:standard", "service:fast", "service:longctx", "service:gateway"}
    for check in services.values():
        assert check["status"] == "PASS" and check["data"]["state"] == "healthy", check
        assert check["data"]["rss_bytes"] > 10_000_000  # a real server's resident memory
    assert found["ports"]["status"] == "PASS"
    assert all(p["ours"] for p in found["ports"]["data"]["ports"]), found["ports"]
    assert found["secrets"]["status"] == "PASS"
    text = report.read_text()
    assert use_home.key not in text and CLOUD_KEY not in text and use_home.key not in r.stdout


def test_second_up_changes_nothing(use_home: Live, run) -> None:
    before = {s: use_home.pid(s) for s in ("standard", "fast", "longctx", "gateway")}
    r = run("up")
    assert r.exit_code == 0, r.stderr
    assert "already running, nothing changed" in r.stderr
    assert before == {s: use_home.pid(s) for s in before}


@pytest.mark.parametrize("tier", ["standard", "fast", "longctx"])
def test_each_tier_by_name_streaming_and_not(live: Live, tier: str) -> None:
    client = live.client()
    raw = client.chat.completions.with_raw_response.create(
        model=tier, messages=[{"role": "user", "content": "Hello"}], max_tokens=8, tools=TOOLS)
    reply = raw.parse()
    assert reply.choices and reply.choices[0].finish_reason
    port = stack_store.load(live.home).tier(tier).port
    assert raw.headers["x-litellm-model-api-base"] == f"http://127.0.0.1:{port}/v1"
    chunks = list(client.chat.completions.create(
        model=tier, messages=[{"role": "user", "content": "Hello"}], max_tokens=8, stream=True, tools=TOOLS))
    assert chunks and any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_a_real_tool_call_through_the_gateway(live: Live) -> None:
    client = live.client()
    ask = {"model": "longctx", "messages": [{"role": "user", "content": "Weather in Paris?"}],
           "tools": TOOLS, "max_tokens": 64, "temperature": 0}
    reply = client.chat.completions.create(**ask)
    calls = reply.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    names, args = [], ""
    for chunk in client.chat.completions.create(**ask, stream=True):
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if call.function and call.function.name:
                names.append(call.function.name)
            if call.function and call.function.arguments:
                args += call.function.arguments
    assert names == ["get_weather"] and json.loads(args) == {"city": "Paris"}


def test_gateway_rejects_requests_without_the_key(live: Live) -> None:
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    no_key = httpx.post(f"{live.endpoint}/chat/completions", json=body, timeout=30, trust_env=False)
    assert no_key.status_code >= 400 and "choices" not in no_key.text
    with pytest.raises(openai.APIStatusError):
        live.client(key="sk-not-the-key-0000000000").chat.completions.create(**body)


def test_kill9_one_tier_requests_fall_back(use_home: Live, run) -> None:
    live = use_home
    os.kill(live.pid("standard"), signal.SIGKILL)
    client = live.client()
    raw = client.chat.completions.with_raw_response.create(
        model="standard", messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
    assert raw.parse().choices
    fast_port = stack_store.load(live.home).tier("fast").port
    assert raw.headers["x-litellm-model-api-base"] == f"http://127.0.0.1:{fast_port}/v1"
    chunks = list(client.chat.completions.create(
        model="standard", messages=[{"role": "user", "content": "Hello"}], max_tokens=4, stream=True))
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    states = {s.name: s.state for s in lifecycle.status(live.home).services}
    assert states["standard"] == "crashed" and states["fast"] == "healthy"

    # `up --tier` brings the crashed tier back; nothing else is touched.
    gateway_pid = live.pid("gateway")
    r = run("up", "--tier", "standard")
    assert r.exit_code == 0, r.stderr
    assert "started standard" in r.stderr
    assert live.pid("gateway") == gateway_pid
    states = {s.name: s.state for s in lifecycle.status(live.home).services}
    assert states["standard"] == "healthy"
    live.pgids.add(live.pid("standard"))


def test_every_local_tier_dead_the_cloud_answers(live: Live) -> None:
    for tier in ("standard", "fast", "longctx"):
        os.kill(live.pid(tier), signal.SIGKILL)
    assert live.cloud is not None
    live.cloud.seen.clear()
    client = live.client()
    reply = client.chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
    assert reply.choices[0].message.content == CLOUD_TEXT
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="longctx", messages=[{"role": "user", "content": "Hello"}], max_tokens=4, stream=True)
        if c.choices)
    assert text == CLOUD_TEXT
    assert live.cloud.seen and all(auth == f"Bearer {CLOUD_KEY}" for _, auth in live.cloud.seen)


def test_down_leaves_no_process_of_the_stack(use_home: Live, run) -> None:
    r = run("down")
    assert r.exit_code == 0, r.stderr
    assert "gateway" in r.stderr
    assert not list(use_home.home.run_dir.glob("*.pid"))
    assert _stack_processes(use_home.home) == []
    for pgid in use_home.pgids:
        assert processes.group_members(pgid) == []
    states = {s.name: s.state for s in lifecycle.status(use_home.home).services}
    assert set(states.values()) == {"stopped"}
