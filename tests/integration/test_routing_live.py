"""`auto`, context-window fallback, served-by headers, counts and Anthropic clients, for real.

One stack per module: `setup --demo` (standard and fast: 2048-token windows, longctx:
8192), three real vllm-mlx servers, the front door, and the real LiteLLM for the cloud
(a cloud key is stored). The tool tier is set to `fast` through `config set`, as a
user would. The only fake is the cloud's server: a small OpenAI-compatible stand-in
for OpenRouter behind LiteLLM, so the end of the fallback chain can be reached offline.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import anthropic
import httpx
import openai
import pytest
from typer.testing import CliRunner

from mlx_stack.cli.app import app
from mlx_stack.core.stack import GATEWAY, Cloud
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_store
from mlx_stack.system import pidfile, ports, secrets
from tests.integration.cloud_standin import cloud_standin

pytestmark = pytest.mark.integration

TOOLS = [{
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather for a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}]
# ~2,500 tokens: over standard's prompt limit (2048 - 512), well under longctx's (8192 - 512).
LONG = "The quick brown fox jumps over the lazy dog. " * 280
# Over every tier's window.
HUGE = "The quick brown fox jumps over the lazy dog. " * 1200
UP_DEADLINE_S = 420
CLOUD_MODEL = "stand-in/model"


@dataclass
class Live:
    home: Paths
    key: str
    gateway: str  # http://127.0.0.1:PORT

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway + "/v1", api_key=self.key, max_retries=0, timeout=120)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway, api_key=self.key, max_retries=0, timeout=120)


def _cli(*args: str) -> None:
    r = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.stderr


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = Paths(tmp_path_factory.mktemp("routing") / "home")
    with cloud_standin("from the cloud") as cloud, pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLX_STACK_HOME", str(home.home))
        mp.setenv("NO_COLOR", "1")
        try:
            _cli("setup", "--demo", "--no-start")
            stack = stack_store.load(home)
            # the windows these tests route on (the demo's standard has 64K for agents)
            windows = {"standard": 2048, "fast": 2048, "longctx": 8192}
            stack = replace(stack, tiers=tuple(
                                replace(t, port=ports.free_port(), context_window=windows[t.name])
                                for t in stack.tiers),
                            gateway=replace(stack.gateway, port=ports.free_port()),
                            cloud=Cloud(model=CLOUD_MODEL,
                                        base_url=cloud.base_url))
            stack_store.save(home, stack)
            secrets.write_secret(home, secrets.OPENROUTER_KEY, "sk-or-v1-stand-in")
            _cli("config", "set", "routing.tool-tier", "fast")
            # The front door finds its routes from its own command, not from MLX_STACK_HOME.
            mp.setenv("MLX_STACK_HOME", str(home.home.parent / "not-this-home"))
            lifecycle.up(home, health_timeout=UP_DEADLINE_S)
            mp.setenv("MLX_STACK_HOME", str(home.home))
            yield Live(home, secrets.read_secret(home, secrets.GATEWAY_KEY) or "",
                       f"http://127.0.0.1:{stack.gateway.port}")
        finally:
            lifecycle.down(home, grace=5)


@pytest.fixture
def use_home(live: Live, monkeypatch: pytest.MonkeyPatch) -> Live:
    """For tests that run the CLI against the live stack (the autouse fixture isolates)."""
    monkeypatch.setenv("MLX_STACK_HOME", str(live.home.home))
    return live


def _served(headers: httpx.Headers) -> tuple[str, str, str]:
    return headers["x-mlx-stack-tier"], headers["x-mlx-stack-route"], headers["x-mlx-stack-model"]


def _chat(live: Live, model: str, content: str, *, stream: bool, **extra: object) -> httpx.Headers:
    raw = live.openai().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=4, stream=stream, **extra)
    reply = raw.parse()
    if stream:
        chunks = list(reply)  # type: ignore[arg-type]
        assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    else:
        assert reply.choices[0].finish_reason  # type: ignore[union-attr]
    return raw.headers


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_auto_picks_the_tier_from_the_request(live: Live, stream: bool) -> None:
    assert _served(_chat(live, "auto", "Hello", stream=stream)) == (
        "standard", "auto-default", "mlx-stack/demo-standard")
    assert _served(_chat(live, "auto", "Weather in Paris?", stream=stream, tools=TOOLS)) == (
        "fast", "auto-tools", "mlx-stack/demo-fast")
    assert _served(_chat(live, "auto", LONG, stream=stream)) == (
        "longctx", "auto-long-prompt", "mlx-stack/demo-longctx")
    headers = _chat(live, "auto", LONG, stream=stream, tools=TOOLS)
    assert headers["x-mlx-stack-tier"] == "longctx" and headers["x-mlx-stack-requested"] == "auto"


def test_auto_counts_for_real_near_a_limit(live: Live) -> None:
    # Both estimates sit near standard's limit (1,536): the real count decides.
    digits = "7 " * 2100  # estimate ~1,060 tokens, real count ~4,200: too long for standard
    assert _served(_chat(live, "auto", digits, stream=False))[:2] == ("longctx", "auto-long-prompt")
    # The tier's own tokenizer (the demo's knows "weather" as one token): estimate ~1,580
    # tokens, real count ~900: fits standard.
    words = "weather" * 900
    assert _served(_chat(live, "auto", words, stream=False))[:2] == ("standard", "auto-default")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_too_long_for_standard_is_served_by_longctx(live: Live, stream: bool) -> None:
    headers = _chat(live, "standard", LONG, stream=stream)
    assert _served(headers) == ("longctx", "fallback", "mlx-stack/demo-longctx")
    assert headers["x-mlx-stack-requested"] == "standard"
    # a short prompt stays where it was sent
    assert _served(_chat(live, "standard", "Hello", stream=stream))[:2] == ("standard", "direct")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_too_long_for_every_local_tier_goes_to_the_cloud(live: Live, stream: bool) -> None:
    headers = _chat(live, "standard", HUGE, stream=stream)
    assert _served(headers) == ("cloud", "fallback", CLOUD_MODEL)


@pytest.mark.parametrize("tier", ["standard", "fast", "longctx", "auto"])
def test_anthropic_client_round_trip(live: Live, tier: str) -> None:
    client = live.anthropic()
    served = "standard" if tier == "auto" else tier
    raw = client.messages.with_raw_response.create(
        model=tier, max_tokens=4, messages=[{"role": "user", "content": "Hello"}])
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.stop_reason
    assert raw.headers["x-mlx-stack-tier"] == served
    with client.messages.stream(model=tier, max_tokens=4,
                                messages=[{"role": "user", "content": "Hello"}]) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start" and "message_stop" in events and final.stop_reason
    assert stream.response.headers["x-mlx-stack-tier"] == served


def test_anthropic_client_gets_the_context_window_fallback(live: Live) -> None:
    client = live.anthropic()
    raw = client.messages.with_raw_response.create(
        model="standard", max_tokens=4, messages=[{"role": "user", "content": LONG}])
    assert raw.parse().stop_reason and _served(raw.headers)[:2] == ("longctx", "fallback")
    with client.messages.stream(model="standard", max_tokens=4,
                                messages=[{"role": "user", "content": LONG}]) as stream:
        assert "message_stop" in [e.type for e in stream]
    assert stream.response.headers["x-mlx-stack-tier"] == "longctx"


def _counts(live: Live, predicate) -> dict:
    deadline = time.monotonic() + 10
    while True:
        r = CliRunner().invoke(app, ["status", "--json"], catch_exceptions=False)
        assert r.exit_code in (0, 3), r.stderr  # 3 while a tier is down on purpose
        data = json.loads(r.stdout)["routing"]
        if (data and data["counts"] and predicate(data["counts"])) or time.monotonic() > deadline:
            return data
        time.sleep(0.3)


def test_status_counts_requests_and_fallbacks_per_tier(use_home: Live) -> None:
    live = use_home
    data = _counts(live, lambda c: c["tiers"].get("standard", {}).get("fallbacks_out", 0) >= 4)
    counts = data["counts"]
    assert data["rules"]["tool_tier"] == "fast" and data["custom"] is True
    assert counts["tiers"]["standard"]["fallbacks_out"] >= 4  # 2 openai + 2 anthropic above
    assert counts["tiers"]["longctx"]["fallbacks_in"] >= 4
    assert counts["tiers"]["cloud"]["fallbacks_in"] >= 2  # too long for every local tier
    assert counts["tiers"]["standard"]["generated_tokens"] > 0
    assert all(counts["tiers"][t]["requests"] >= 2 for t in ("standard", "fast", "longctx"))
    assert counts["auto"]["fast"] >= 2 and counts["auto_reasons"]["long-prompt"] >= 4
    text = CliRunner().invoke(app, ["status"], catch_exceptions=False).stdout
    assert "with tools -> fast" in text and "fallbacks out" in text and "cloud" in text


def test_a_rule_changed_on_a_live_stack_applies_without_restart(use_home: Live) -> None:
    live = use_home
    before = lifecycle.status(live.home)
    gateway_pid = next(s.pid for s in before.services if s.name == GATEWAY)
    _cli("config", "set", "routing.tool-tier", "standard")
    try:
        deadline = time.monotonic() + 10
        while True:
            tier = _chat(live, "auto", "Weather?", stream=False, tools=TOOLS)["x-mlx-stack-tier"]
            if tier == "standard" or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert tier == "standard"
        assert json.loads(live.home.routes_file.read_text())["rules"]["tool_tier"] == "standard"
        after = lifecycle.status(live.home)
        assert next(s.pid for s in after.services if s.name == GATEWAY) == gateway_pid
    finally:
        _cli("config", "set", "routing.tool-tier", "fast")


def test_a_dead_tier_is_named_in_the_headers(live: Live) -> None:
    """Last: kills the fast tier for good (the fixture's `down` cleans up)."""
    record = pidfile.read(live.home.run_dir, "fast")
    assert record is not None
    os.killpg(record.pid, signal.SIGKILL)
    for stream in (False, True):
        headers = _chat(live, "fast", "Hello", stream=stream)
        assert _served(headers) == ("standard", "fallback", "mlx-stack/demo-standard")
        assert headers["x-mlx-stack-requested"] == "fast"
