"""The real stack: `setup --demo`, three vllm-mlx tiers, the front door, and LiteLLM for the cloud.

One stack per module (starting it is the expensive part); the tests run in file
order and the later ones break it on purpose (SIGSTOP, kill -9 mid-stream and not,
cloud fallback, down). The only fake is the cloud stand-in: a small OpenAI-compatible
server playing OpenRouter behind the real LiteLLM, so the cloud can be tested offline;
it records every request, so the tests can prove it saw nothing it should not.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import anthropic
import httpx
import openai
import pytest
from typer.testing import CliRunner

from mlx_stack.cli.app import app
from mlx_stack.core.stack import Cloud
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_store
from mlx_stack.services.demo_models import build_scripted_model
from mlx_stack.system import pidfile, ports, processes, secrets
from tests.helpers import cli_command, cli_env, poll_until, stack_processes, wait_for
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
    return subprocess.Popen(cli_command(*args), env=cli_env(home), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


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
            live.pgids = {live.pid(s) for s in [*stack.services, "litellm"]}
            yield live
        finally:
            lifecycle.down(home, grace=5)
            for proc in stack_processes(home):  # a safety net: never leave servers behind
                proc.kill()


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
    procs = [" ".join(p.cmdline()) for p in stack_processes(live.home)]
    procs = [c for c in procs if "logwriter" not in c]
    assert len([c for c in procs if "vllm-mlx" in c]) == 3
    assert len([c for c in procs if "-m mlx_stack.gateway" in c]) == 1
    assert len([c for c in procs if "bin/litellm" in c]) == 1  # a cloud key is stored
    print(f"\nup (3 tiers + gateway, under a concurrent second up): {live.up_seconds:.1f} s")


def test_status_shows_every_service_healthy(live: Live) -> None:
    report = lifecycle.status(live.home)
    states = {s.name: s.state for s in report.services}
    assert states == {"standard": "healthy", "fast": "healthy", "longctx": "healthy", "litellm": "healthy",
                      "gateway": "healthy"}
    models = {s.name: s.model for s in report.services}
    assert models["fast"] == "mlx-stack/demo-fast"
    assert models["gateway"] == "front door" and models["litellm"] == "LiteLLM -> stand-in/model"
    assert {s.name: s.kind for s in report.services}["litellm"] == "cloud-gateway"
    assert report.gateway_key == secrets.mask(live.key) and live.key not in json.dumps(report.as_dict())
    assert all(s.pid and s.uptime_s is not None for s in report.services)


def test_status_takes_the_front_doors_answer_as_its_tiers_look(live: Live) -> None:
    """The front door's completion goes to `standard` (first in the fallback order) and
    names it: that is standard's look too, so standard answers one completion, not two."""
    log = live.home.log_file("standard")

    def answered() -> int:
        return log.read_text(errors="replace").count("Chat completion:")

    lifecycle.status(live.home)  # (any earlier request's log line is in by the next count)
    time.sleep(1)
    before = answered()
    report = {s.name: s for s in lifecycle.status(live.home).services}
    assert report["standard"].state == report["gateway"].state == "healthy"
    assert report["standard"].latency_ms == report["gateway"].latency_ms  # one answer, two rows
    time.sleep(1)  # the log writer passes the line on
    assert answered() == before + 1


def test_status_sends_the_last_looks_requests_first(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """`status` keeps its look's requests (run/looks.json, never the key); the next one sends
    them before it has loaded the rest, and each tier still answers one completion."""
    from mlx_stack.services import look_ahead
    from mlx_stack.services import status as stack_status

    logs = {t: live.home.log_file(t) for t in ("standard", "fast", "longctx")}

    def answered() -> dict[str, int]:
        return {t: f.read_text(errors="replace").count("Chat completion:") for t, f in logs.items()}

    stack_status.status(live.home)
    kept = (live.home.run_dir / look_ahead.LOOKS_FILE).read_text()
    assert live.key not in kept and CLOUD_KEY not in kept
    # the front door's completion (with its key) is standard's look; LiteLLM's is liveness only
    assert {(r["model"], r["keyed"]) for r in json.loads(kept)["requests"]} == {
        ("standard", True), ("fast", False), ("longctx", False)}
    sent_ahead: list[int] = []
    real_send = look_ahead.send

    def counting(p: Paths) -> look_ahead.Sent:
        sent = real_send(p)
        sent_ahead.append(len(sent.ahead))
        return sent

    monkeypatch.setattr(look_ahead, "send", counting)  # observed, not changed
    time.sleep(1)  # (the log writers pass the last lines on)
    before = answered()
    result = stack_status.status(live.home)
    assert sent_ahead == [3]
    assert {s.state for s in result.services.services} == {"healthy"} and len(result.services.services) == 5
    time.sleep(1)
    assert answered() == {t: n + 1 for t, n in before.items()}


def test_doctor_on_the_running_stack(use_home: Live, run, tmp_path) -> None:
    report = tmp_path / "doctor.json"
    r = run("doctor", "--json", "--report", str(report))
    found = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    services = {k: c for k, c in found.items() if k.startswith("service:")}
    # A cloud key is stored in this module: LiteLLM runs for the cloud, as its own service.
    assert set(services) == {"service:standard", "service:fast", "service:longctx", "service:litellm",
                             "service:gateway"}
    for check in services.values():
        assert check["status"] == "PASS" and check["data"]["state"] == "healthy", check
        assert check["data"]["rss_bytes"] > 10_000_000  # a real server's resident memory
    assert found["ports"]["status"] == "PASS"
    assert all(p["ours"] for p in found["ports"]["data"]["ports"]), found["ports"]
    assert found["secrets"]["status"] == "PASS"
    text = report.read_text()
    assert use_home.key not in text and CLOUD_KEY not in text and use_home.key not in r.stdout


def test_second_up_changes_nothing(use_home: Live, run) -> None:
    before = {s: use_home.pid(s) for s in ("standard", "fast", "longctx", "litellm", "gateway")}
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
    assert (raw.headers["x-mlx-stack-tier"], raw.headers["x-mlx-stack-route"]) == (tier, "direct")
    raw = client.chat.completions.with_raw_response.create(
        model=tier, messages=[{"role": "user", "content": "Hello"}], max_tokens=8, stream=True, tools=TOOLS)
    chunks = list(raw.parse())
    assert chunks and any(c.choices and c.choices[0].finish_reason for c in chunks)
    assert raw.headers["x-mlx-stack-tier"] == tier


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


ROUTES = [("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/embeddings"),
          ("POST", "/v1/responses"), ("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens"),
          ("GET", "/v1/models"), ("GET", "/metrics"), ("GET", "/api/dashboard"), ("POST", "/"),
          ("GET", "/openapi.json"), ("GET", "/v1/nothing")]


def test_without_the_key_every_route_is_401(live: Live) -> None:
    root = live.endpoint.removesuffix("/v1")
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    log_before = (live.home.logs_dir / "gateway.log").read_text()
    with httpx.Client(base_url=root, timeout=30, trust_env=False) as http:
        for method, route in ROUTES:
            for headers, params in (({}, {}), ({"Authorization": "Bearer sk-not-the-key-000000000000"}, {}),
                                    ({"x-api-key": "sk-not-the-key-000000000000"}, {}),
                                    ({}, {"api_key": live.key, "key": live.key})):
                r = http.request(method, route, json=body if method == "POST" else None, headers=headers,
                                 params=params)
                assert r.status_code == 401, (method, route, headers, params, r.text)
                error = r.json()["error"]
                if route.startswith("/v1/messages"):
                    assert r.json()["type"] == "error" and error["type"] == "authentication_error"
                else:
                    assert error["code"] == "invalid_api_key"
        assert http.get("/health").status_code == 200  # the liveness route: no key, no data
        page = http.get("/")  # the dashboard page: no key, no data (it asks for the key)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "demo-fast" not in page.text and live.key not in page.text
    with pytest.raises(openai.AuthenticationError):
        live.client(key="sk-not-the-key-0000000000").chat.completions.create(**body)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=root, api_key="sk-wrong-0000000000", max_retries=0).messages.create(
            model="fast", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    added = (live.home.logs_dir / "gateway.log").read_text()[len(log_before):]
    assert "Traceback" not in added and len(added.splitlines()) <= 2  # rate-limited, one short line
    assert live.key not in added


def _metric_totals(live: Live, name: str) -> dict[str, int]:
    text = httpx.get(live.endpoint.removesuffix("/v1") + "/metrics", trust_env=False,
                     headers={"Authorization": f"Bearer {live.key}"}).text
    out = {}
    for line in text.splitlines():
        if line.startswith(f"mlx_stack_gateway_{name}_total{{"):
            out[line.split('tier="')[1].split('"')[0]] = int(float(line.rsplit(" ", 1)[1]))
    return out


def test_client_errors_go_back_untouched_and_nobody_else_sees_them(live: Live) -> None:
    assert live.cloud is not None
    live.cloud.seen.clear()
    requests_before = _metric_totals(live, "requests")
    fallbacks_before = _metric_totals(live, "fallbacks_out")
    client = live.client()
    hello = [{"role": "user", "content": "Hello"}]
    for stream in (False, True):
        with pytest.raises(openai.UnprocessableEntityError):
            client.chat.completions.create(model="fast", messages=hello, temperature="hot",  # type: ignore[arg-type]
                                           stream=stream)
        with pytest.raises(openai.BadRequestError, match="max_tokens"):  # the front door's own check
            client.chat.completions.create(model="fast", messages=hello, max_tokens=-1, stream=stream)
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="fast", messages=[], max_tokens=4, stream=stream)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="no-such-model", messages=hello, max_tokens=4, stream=stream)
    headers = {"Authorization": f"Bearer {live.key}"}
    for raw in (b"[1, 2]", b"{not json", b'"text"'):
        r = httpx.post(f"{live.endpoint}/chat/completions", content=raw, headers=headers, trust_env=False)
        assert r.status_code == 400 and r.json()["error"]["message"]
    r = httpx.post(f"{live.endpoint}/chat/completions", headers=headers, trust_env=False,
                   json={"model": "fast", "messages": hello, "temperature": "hot"})
    assert r.status_code == 422 and r.headers["x-mlx-stack-tier"] == "fast"
    assert r.json()["detail"]  # the tier's own body, untouched
    assert live.cloud.seen == []
    assert _metric_totals(live, "fallbacks_out") == fallbacks_before
    after = _metric_totals(live, "requests")
    assert after.get("standard", 0) == requests_before.get("standard", 0)
    assert after.get("longctx", 0) == requests_before.get("longctx", 0)
    assert _metric_totals(live, "client_errors")["fast"] >= 3


def test_fifty_concurrent_streams_all_succeed(live: Live) -> None:
    def one(i: int) -> str:
        chunks = live.client().chat.completions.create(
            model=("fast", "standard", "auto")[i % 3], messages=[{"role": "user", "content": f"Hi {i}"}],
            max_tokens=8, stream=True)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        return finish[-1] if finish else "none"

    with ThreadPoolExecutor(max_workers=50) as pool:
        finishes = list(pool.map(one, range(50)))
    assert len(finishes) == 50 and "none" not in finishes


def test_finish_then_close_never_hangs_the_next_request(live: Live) -> None:
    """Clients that read a stream to its finish_reason and close before [DONE] leave no
    connection behind that would hang the next request (it was up to 600 s)."""
    headers = {"Authorization": f"Bearer {live.key}"}
    body = {"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "stream": True}
    slowest = 0.0
    for _ in range(30):
        with httpx.Client(timeout=30, trust_env=False) as c, c.stream(
                "POST", f"{live.endpoint}/chat/completions", json=body, headers=headers) as r:
            for line in r.iter_lines():
                if '"finish_reason":"' in line.replace(" ", ""):
                    break
        start = time.monotonic()
        r2 = httpx.post(f"{live.endpoint}/chat/completions", headers=headers, trust_env=False, timeout=30,
                        json={**body, "stream": False, "max_tokens": 2})
        slowest = max(slowest, time.monotonic() - start)
        assert r2.status_code == 200 and r2.headers["x-mlx-stack-tier"] == "fast"
    assert slowest < 2.0


def test_a_departed_non_stream_client_stops_the_tier(live: Live) -> None:
    """A long non-stream answer whose client leaves after 0.5 s: the tier stops generating
    (its CPU falls back to idle) instead of finishing 2,000 tokens for nobody."""
    import psutil

    tier = psutil.Process(live.pid("fast"))
    headers = {"Authorization": f"Bearer {live.key}"}
    body = {"model": "fast", "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 2000, "temperature": 0}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{live.endpoint}/chat/completions", headers=headers, json=body, timeout=0.5,
                   trust_env=False)
    time.sleep(1.0)
    before = sum(tier.cpu_times()[:2]) + sum(sum(c.cpu_times()[:2]) for c in tier.children(recursive=True))
    time.sleep(2.0)
    after = sum(tier.cpu_times()[:2]) + sum(sum(c.cpu_times()[:2]) for c in tier.children(recursive=True))
    assert after - before < 0.5, f"the tier used {after - before:.2f} CPU-s for a client that left"
    assert _metric_totals(live, "client_gone")["fast"] >= 1


def test_a_frozen_tier_is_left_within_seconds(live: Live) -> None:
    assert live.cloud is not None
    live.cloud.seen.clear()
    pid = live.pid("standard")
    os.kill(pid, signal.SIGSTOP)
    try:
        client = live.client()
        for stream in (False, True):
            start = time.monotonic()
            raw = client.chat.completions.with_raw_response.create(
                model="standard", messages=[{"role": "user", "content": "Hello"}], max_tokens=4,
                stream=stream)
            if stream:
                assert any(c.choices and c.choices[0].finish_reason for c in raw.parse())
            else:
                assert raw.parse().choices
            assert time.monotonic() - start < 15
            assert (raw.headers["x-mlx-stack-tier"], raw.headers["x-mlx-stack-route"]) == ("fast", "fallback")
        # While it cools down, requests for it do not wait on it again.
        start = time.monotonic()
        client.chat.completions.create(model="standard", messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=2)
        assert time.monotonic() - start < 2.5
    finally:
        os.kill(pid, signal.SIGCONT)
    assert live.cloud.seen == []


def test_kill9_one_tier_requests_fall_back(use_home: Live, run) -> None:
    live = use_home
    assert live.cloud is not None
    live.cloud.seen.clear()
    os.kill(live.pid("standard"), signal.SIGKILL)
    client = live.client()
    raw = client.chat.completions.with_raw_response.create(
        model="standard", messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
    assert raw.parse().choices
    assert (raw.headers["x-mlx-stack-tier"], raw.headers["x-mlx-stack-route"]) == ("fast", "fallback")
    chunks = list(client.chat.completions.create(
        model="standard", messages=[{"role": "user", "content": "Hello"}], max_tokens=4, stream=True))
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    assert live.cloud.seen == []  # another local tier answered: the cloud saw nothing
    # A killed process of ~1 GB may take a moment to finish exiting on a loaded machine
    # (until then it is alive and not answering: `down`); then it is `crashed`.
    def states() -> dict[str, str]:
        return {s.name: s.state for s in lifecycle.status(live.home).services}

    poll_until(lambda: states()["standard"] == "crashed", 20, every=0.5)
    now = states()
    assert now["standard"] == "crashed" and now["fast"] == "healthy"

    # `up --tier` brings the crashed tier back; nothing else is touched.
    gateway_pid = live.pid("gateway")
    r = run("up", "--tier", "standard")
    assert r.exit_code == 0, r.stderr
    assert "started standard" in r.stderr
    assert live.pid("gateway") == gateway_pid
    assert states()["standard"] == "healthy"
    live.pgids.add(live.pid("standard"))


def test_kill9_under_twenty_streams_every_stream_completes(use_home: Live, run) -> None:
    """20 chat streams on a tier that is killed -9 under them: the ones it had not answered
    yet restart on the next tier, the ones under way are continued there; all 20 end
    well-formed with a finish_reason."""
    live = use_home
    _wait_served_directly(live, "standard")
    under_way = threading.Event()

    def one(i: int) -> tuple[str, str]:
        chunks = live.client().chat.completions.create(
            model="standard", messages=[{"role": "user", "content": f"Tell me story {i}."}], max_tokens=200,
            temperature=0, stream=True)
        text, finish = [], None
        for c in chunks:
            if c.choices:
                text.append(c.choices[0].delta.content or "")
                finish = c.choices[0].finish_reason or finish
                if len(text) >= 3:
                    under_way.set()
        return "".join(text), finish or "none"

    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(one, i) for i in range(20)]
        assert under_way.wait(120)
        os.killpg(live.pid("standard"), signal.SIGKILL)
        results = [f.result(timeout=300) for f in futures]
    assert [finish for _, finish in results] == ["length"] * 20, results
    r = run("up", "--tier", "standard")
    assert r.exit_code == 0, r.stderr
    live.pgids.add(live.pid("standard"))


def _wait_served_directly(live: Live, tier: str, deadline_s: float = 60) -> None:
    """Until the front door sends requests for ``tier`` to it again (its cool-down ended)."""
    def served_by() -> str:
        raw = live.client().chat.completions.with_raw_response.create(
            model=tier, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
        return raw.headers["x-mlx-stack-tier"]

    wait_for(lambda: served_by() == tier, deadline_s, f"{tier} to be served directly again", every=0.5)


def _long_chat(live: Live, tier: str, max_tokens: int = 400):
    return live.client().chat.completions.with_raw_response.create(
        model=tier, messages=[{"role": "user", "content": "Tell me a long story."}], max_tokens=max_tokens,
        temperature=0, stream=True)


@pytest.mark.parametrize("fault", ["freeze", "kill"])
def test_a_chat_stream_cut_mid_answer_goes_on_on_the_next_tier(live: Live, fault: str) -> None:
    """The OpenAI chat stream the client reads stays one unbroken answer: the next tier
    continues the same text (rendered with its own chat template) after the cut."""
    _wait_served_directly(live, "standard")
    continued_before = sum(_metric_totals(live, "continuations").values())
    pgid = live.pid("standard")
    raw = _long_chat(live, "standard", max_tokens=1500)  # still generating when stopped
    assert raw.headers["x-mlx-stack-tier"] == "standard"
    got: list[str] = []
    finish = []
    cut_at = None
    times: list[float] = []
    try:
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
                times.append(time.monotonic())
                if len(got) == 3:
                    os.killpg(pgid, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
                    cut_at = time.monotonic()
            if chunk.choices and chunk.choices[0].finish_reason:
                finish.append(chunk.choices[0].finish_reason)
    finally:
        if fault == "freeze":
            os.killpg(pgid, signal.SIGCONT)
    assert cut_at is not None and time.monotonic() - cut_at < 60
    assert finish == ["length"] and len(got) > 20
    # continued on the next local tier that could take it (fast, or longctx when fast's
    # 2K window refuses the rest of a 1,500-token answer)
    # (counted as it starts: the SDK closes on [DONE], which may cancel the request before
    # the tier's stream has ended)
    assert sum(_metric_totals(live, "continuations").values()) == continued_before + 1
    assert _metric_totals(live, "stream_errors")["standard"] >= 1
    gap = max(b - a for a, b in itertools.pairwise(times[2:]))
    print(f"\n{fault} mid-stream: the client waited {gap * 1000:.0f} ms at most between two chunks; "
          f"{len(got)} chunks, one unbroken answer")


def test_an_anthropic_stream_cut_mid_answer_ends_with_an_error_event(live: Live) -> None:
    """Continuation is for OpenAI chat streams; other streams end with a well-formed error event."""
    _wait_served_directly(live, "fast")
    client = anthropic.Anthropic(base_url=live.endpoint.removesuffix("/v1"), api_key=live.key,
                                 max_retries=0, timeout=60)
    got = []
    with pytest.raises(anthropic.APIStatusError, match="stopped mid-answer"), client.messages.stream(
            model="fast", max_tokens=1500, messages=[{"role": "user", "content": "Tell me a long story."}],
            extra_body={"temperature": 0}) as events:
        for event in events:
            if event.type == "content_block_delta":
                got.append(event)
                if len(got) == 3:
                    os.killpg(live.pid("fast"), signal.SIGKILL)
    assert len(got) >= 3
    assert _metric_totals(live, "stream_errors")["fast"] >= 1


def test_the_cloud_by_name(live: Live) -> None:
    assert live.cloud is not None
    live.cloud.seen.clear()
    raw = live.client().chat.completions.with_raw_response.create(
        model="cloud", messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
    assert raw.parse().choices[0].message.content == CLOUD_TEXT
    assert (raw.headers["x-mlx-stack-tier"], raw.headers["x-mlx-stack-model"]) == ("cloud", "stand-in/model")
    assert [model for model, _ in live.cloud.seen] == ["stand-in/model"]
    assert "cloud" in [m.id for m in live.client().models.list()]


def test_every_local_tier_dead_the_cloud_answers(live: Live) -> None:
    for tier in ("standard", "fast", "longctx"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(live.pid(tier), signal.SIGKILL)
    assert live.cloud is not None
    live.cloud.seen.clear()
    client = live.client()
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
    assert raw.parse().choices[0].message.content == CLOUD_TEXT
    assert (raw.headers["x-mlx-stack-tier"], raw.headers["x-mlx-stack-route"]) == ("cloud", "fallback")
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
    assert stack_processes(use_home.home) == []
    for pgid in use_home.pgids:
        assert processes.group_members(pgid) == []
    states = {s.name: s.state for s in lifecycle.status(use_home.home).services}
    assert set(states.values()) == {"stopped"}
