"""The front door under fire: hostile clients and tiers, against a real front door process.

A real ``python -m mlx_stack.gateway``; its upstreams are small stand-in servers (faults a
real vllm-mlx cannot produce on demand: a tier that dies after its role chunk, answers one
request with a 500, takes its time and notices when its client leaves). Raw sockets play
the clients that vanish, stall or never speak. The real-tier side of the same rules
(a departed client stops a vllm-mlx tier, finish-then-close, kill -9 under 20 streams) is
in test_stack_live.py. Seconds, no models.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from mlx_stack.core.front_door import Upstream
from mlx_stack.core.gateway_config import render_routes
from mlx_stack.core.routing import default_rules
from tests.helpers import JSONHandler, front_door_process

pytestmark = pytest.mark.integration
KEY = "sk-test-front-door-fire-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


class StandIn:
    """A tier stand-in. Modes: ok (JSON or a stream of ``n`` chunks), die-after-role (a stream
    that sends its role chunk and drops the connection), slow (answers after 20 s, notes when
    its client left). Any mode answers 500 to a body with ``"x_poison": true``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.seen = 0
        self.gone_at: list[float] = []
        stand_in = self

        class Handler(JSONHandler):

            def do_GET(self) -> None:
                self._reply(200, {"status": "ok"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                stand_in.seen += 1
                if body.get("x_poison"):
                    self._reply(500, {"error": {"message": "cannot handle this request"}})
                    return
                if stand_in.mode == "slow":
                    self._wait_or_gone(20.0)
                    return
                if not body.get("stream"):
                    message = {"role": "assistant", "content": "ok"}
                    self._reply(200, {"id": "x", "object": "chat.completion", "model": body["model"],
                                      "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                      "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
                if stand_in.mode == "die-after-role":
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                for i in range(int(body.get("max_tokens") or 3)):
                    self._event({"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]})
                self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                done = b"data: [DONE]\n\n"
                self.wfile.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(done), done))

            def _event(self, data: dict) -> None:
                event = {"id": "c1", "object": "chat.completion.chunk", **data}
                raw = f"data: {json.dumps(event)}\n\n".encode()
                self.wfile.write(b"%x\r\n%b\r\n" % (len(raw), raw))

            def _wait_or_gone(self, seconds: float) -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    readable, _, _ = select.select([self.connection], [], [], 0.05)
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        stand_in.gone_at.append(time.monotonic())
                        self.close_connection = True
                        return
                self._reply(200, {"choices": []})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@dataclass
class Door:
    url: str
    port: int
    tiers: dict[str, StandIn]
    proc: subprocess.Popen[str]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    def ask(self, model: str, **body: object) -> httpx.Response:
        return httpx.post(self.url + "/v1/chat/completions", timeout=30, trust_env=False, headers=AUTH,
                          json={"model": model, "messages": [{"role": "user", "content": "hi"}], **body})

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", headers=AUTH, trust_env=False, timeout=10).text


def _start(tmp: Path, tiers: dict[str, StandIn], order: list[str], env: dict[str, str]) -> Door:
    routes = tmp / "front-door.json"
    ups = [Upstream(name, f"org/{name}", s.url) for name, s in tiers.items()]
    routes.write_text(json.dumps(render_routes(ups, order, default_rules(order), None)))
    log = tmp / "gateway.log"
    proc, url = front_door_process(routes, {"MLX_STACK_GATEWAY_KEY": KEY, **env}, stderr=log.open("w"))
    return Door(url, int(url.rsplit(":", 1)[1]), tiers, proc, log)


def _stop(door: Door) -> None:
    door.proc.terminate()
    door.proc.wait(10)
    for s in door.tiers.values():
        s.server.shutdown()


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    tiers = {"dying": StandIn("die-after-role"), "good": StandIn("ok"), "slow": StandIn("slow")}
    d = _start(tmp_path_factory.mktemp("fire"), tiers, ["dying", "good", "slow"],
               {"MLX_STACK_GATEWAY_IDLE_S": "2", "MLX_STACK_GATEWAY_MAX_CONNECTIONS": "300"})
    try:
        yield d
    finally:
        _stop(d)
        log = d.log.read_text()
        assert "Traceback" not in log, log


def test_every_configured_tier_is_in_metrics_from_the_start(door: Door) -> None:
    text = door.metrics()
    for tier in door.tiers:
        assert f'mlx_stack_gateway_requests_total{{tier="{tier}"}} 0' in text
        assert f'mlx_stack_gateway_tier_state{{tier="{tier}",state="up"}} 1' in text
        assert f'mlx_stack_gateway_tier_up{{tier="{tier}"}} 1' in text
    assert "mlx_stack_gateway_open_connections " in text


def test_a_stream_whose_tier_dies_before_content_restarts_on_the_next_tier(door: Door) -> None:
    client = openai.OpenAI(base_url=door.url + "/v1", api_key=KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="dying", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=4)
    assert raw.headers["x-mlx-stack-tier"] == "good"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "w0 w1 w2 w3 " and chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("body, needle", [
    ({"model": ["good"]}, "`model` must be a non-empty string"),
    ({"model": {"x": 1}}, "`model` must be a non-empty string"),
    ({"model": "good", "max_tokens": 0}, "`max_tokens` must be a positive integer"),
    ({"model": "good", "max_tokens": -1}, "`max_tokens` must be a positive integer"),
    ({"model": "good", "max_tokens": "9"}, "`max_tokens` must be a positive integer"),
])
def test_client_errors_are_400_in_the_openai_dialect(door: Door, body: dict, needle: str) -> None:
    r = httpx.post(door.url + "/v1/chat/completions", headers=AUTH, trust_env=False, timeout=10,
                   json={"messages": [{"role": "user", "content": "hi"}], **body})
    assert r.status_code == 400 and needle in r.json()["error"]["message"]


@pytest.mark.parametrize("raw, needle", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
    (b'{"model": "good", "messages": [{"role": "user", "content": "\\ud800"}]}', "surrogate"),
    (b'{"model": "good", "temperature": NaN, "messages": [{"role": "user", "content": "x"}]}', "NaN"),
    (b'{"model": "good", "messages": [{"role": "user", "content": "x"}]', "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
])
def test_malformed_bodies_are_400_never_500(door: Door, raw: bytes, needle: str) -> None:
    r = httpx.post(door.url + "/v1/chat/completions", headers={**AUTH, "content-type": "application/json"},
                   content=raw, trust_env=False, timeout=30)
    assert r.status_code == 400 and needle in r.json()["error"]["message"], r.text


def test_anthropic_max_tokens_zero_is_a_400_and_cools_nothing(door: Door) -> None:
    client = anthropic.Anthropic(base_url=door.url, api_key=KEY, max_retries=0)
    for limit in (0, -1):
        with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
            client.messages.create(model="good", max_tokens=limit,
                                   messages=[{"role": "user", "content": "x"}])
    assert 'mlx_stack_gateway_tier_state{tier="good",state="cooling"} 0' in door.metrics()


def test_a_5xx_every_tier_gives_is_the_clients_error_and_cools_nothing(door: Door) -> None:
    seen = {n: s.seen for n, s in door.tiers.items()}
    r = door.ask("good", x_poison=True)
    assert r.status_code == 400, r.text
    assert "cannot handle this request" in r.json()["error"]["message"]
    assert door.tiers["good"].seen > seen["good"]  # and the others the chain reached (not cooling)
    text = door.metrics()
    for tier in door.tiers:
        assert f'mlx_stack_gateway_tier_state{{tier="{tier}",state="cooling"}} 0' in text
    assert door.ask("good").status_code == 200


def test_a_departed_non_stream_client_closes_the_tier_connection_within_a_second(door: Door) -> None:
    body = json.dumps({"model": "slow", "messages": [{"role": "user", "content": "hi"}]}).encode()
    s = socket.create_connection(("127.0.0.1", door.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + KEY.encode()
              + b"\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body))
    deadline = time.monotonic() + 10
    while door.tiers["slow"].seen == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    s.close()
    left = time.monotonic()
    while not door.tiers["slow"].gone_at and time.monotonic() < left + 5:
        time.sleep(0.02)
    assert door.tiers["slow"].gone_at, "the tier never saw its connection closed"
    assert door.tiers["slow"].gone_at[0] - left < 1.0
    assert "client_gone_total{tier=\"slow\"} 1" in door.metrics()


def test_a_path_cannot_forge_log_lines(door: Door) -> None:
    for path in ("/x%0aFORGED%20line", "/x%0dCR", "/x%00nul", "/x%1b[31mred"):
        httpx.get(door.url + path, trust_env=False, timeout=5)  # 401: logged (rate-limited)
        time.sleep(0.01)
    time.sleep(0.2)
    log = door.log.read_text()
    assert not any(line.startswith("FORGED") for line in log.splitlines())
    assert "\x1b" not in log and "\r" not in log and "\x00" not in log


def test_silent_connections_are_closed_and_never_crowd_out_requests(door: Door) -> None:
    """400 connections that never send a byte, against a cap of 300: the oldest idle ones
    are closed to make room, every real request is answered, and after the idle limit
    (2 s here) none of the silent ones is left."""
    silent = []
    for _ in range(400):
        silent.append(socket.create_connection(("127.0.0.1", door.port)))
    for _ in range(5):
        start = time.monotonic()
        assert door.ask("good").status_code == 200
        assert time.monotonic() - start < 1.0
    time.sleep(3.5)
    still_open = sum(not _closed_by_peer(s) for s in silent)
    for s in silent:
        s.close()
    assert still_open == 0


def _closed_by_peer(s: socket.socket) -> bool:
    s.settimeout(0.05)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_slow_header_is_cut_off(door: Door) -> None:
    s = socket.create_connection(("127.0.0.1", door.port))
    s.sendall(b"GET /health HTTP/1.1\r\n")
    start = time.monotonic()
    s.settimeout(10)
    while True:  # a byte a second: never a whole head
        try:
            s.sendall(b"x")
        except OSError:
            break
        readable, _, _ = select.select([s], [], [], 1.0)
        if readable and s.recv(1024) == b"":
            break
        assert time.monotonic() - start < 8, "a slow-header connection was kept open"
    s.close()


@pytest.fixture
def narrow(tmp_path: Path) -> Iterator[Door]:
    tiers = {"slow": StandIn("slow")}
    d = _start(tmp_path, tiers, ["slow"], {"MLX_STACK_GATEWAY_TIER_LIMIT": "2",
                                           "MLX_STACK_GATEWAY_TIER_QUEUE": "1"})
    try:
        yield d
    finally:
        _stop(d)


def test_a_full_tier_queue_answers_429_with_retry_after(narrow: Door) -> None:
    body = json.dumps({"model": "slow", "messages": [{"role": "user", "content": "hi"}]}).encode()
    held = []
    for _ in range(3):  # 2 in flight + 1 waiting
        s = socket.create_connection(("127.0.0.1", narrow.port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-api-key: " + KEY.encode()
                  + b"\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body))
        held.append(s)
    time.sleep(0.5)
    r = narrow.ask("slow")
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert "mlx_stack_gateway_tier_queued{tier=\"slow\"} 1" in narrow.metrics()
    for s in held:
        s.close()
    time.sleep(1.5)
    text = narrow.metrics()
    assert "mlx_stack_gateway_tier_inflight{tier=\"slow\"} 0" in text, text


def test_the_portable_relay_path_streams_the_same(tmp_path: Path) -> None:
    """uvicorn's h11 protocol (no fast path): the same stream, byte for byte in content."""
    d = _start(tmp_path, {"good": StandIn("ok")}, ["good"], {"MLX_STACK_GATEWAY_HTTP": "h11"})
    try:
        client = openai.OpenAI(base_url=d.url + "/v1", api_key=KEY, max_retries=0)
        chunks = list(client.chat.completions.create(
            model="good", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=50))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "".join(f"w{i} " for i in range(50))
    finally:
        _stop(d)
