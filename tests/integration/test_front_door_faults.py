"""The front door against stand-in tiers for faults a real vllm-mlx cannot produce on demand.

A real ``python -m mlx_stack.gateway`` process; its upstreams are small HTTP servers that
answer 500, hang (answer nothing, not even their health route), answer normally or
stream many large events (to see a slow client and a client that leaves mid-stream),
and record every request they see. Seconds, no models.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from mlx_stack.core.front_door import Upstream
from mlx_stack.core.gateway_config import render_routes
from mlx_stack.core.routing import default_rules
from tests.helpers import JSONHandler, front_door_process, poll_until

pytestmark = pytest.mark.integration
KEY = "sk-test-front-door-key-0123456789"


class StandIn:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.seen: list[str] = []
        self.cut = threading.Event()  # a stream's reader closed the connection early
        stand_in = self

        class Handler(JSONHandler):

            def do_GET(self) -> None:
                if stand_in.mode == "hang":
                    time.sleep(30)
                self._reply(200, {"status": "ok"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                stand_in.seen.append(body["model"])
                if stand_in.mode == "hang":
                    time.sleep(30)
                    return
                if stand_in.mode == "500":
                    self._reply(500, {"error": "boom"})
                    return
                if stand_in.mode == "stream":
                    self._stream(int(body["max_tokens"]), float(body.get("temperature") or 0))
                    return
                self._reply(200, {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

            def _stream(self, events: int, pause: float) -> None:
                """``events`` chat chunks of ~1 KB (numbered), then [DONE]; chunked."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for i in range(events):
                        data = {"choices": [{"index": 0, "delta": {"content": f"{i:06d}" + "x" * 1000}}]}
                        raw = f"data: {json.dumps(data)}\n\n".encode()
                        self.wfile.write(b"%x\r\n%b\r\n" % (len(raw), raw))
                        if pause:
                            time.sleep(pause)
                    done = b"data: [DONE]\n\n"
                    self.wfile.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(done), done))
                    self.wfile.flush()
                except OSError:
                    stand_in.cut.set()
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@contextlib.contextmanager
def _front_door(routes: Path, ups: list[Upstream]) -> Iterator[str]:
    """A real front door on ``ups`` (the fallback order as listed); its base URL."""
    names = [u.name for u in ups]
    routes.write_text(json.dumps(render_routes(ups, names, default_rules(names), None)))
    proc, url = front_door_process(routes, {"MLX_STACK_GATEWAY_KEY": KEY})
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, StandIn]]]:
    tiers = {"broken": StandIn("500"), "frozen": StandIn("hang"), "good": StandIn("ok"),
             "streamer": StandIn("stream")}
    ups = [Upstream(name, f"org/{name}", s.url) for name, s in tiers.items()]
    try:
        with _front_door(tmp_path_factory.mktemp("door") / "front-door.json", ups) as url:
            yield url, tiers
    finally:
        for s in tiers.values():
            s.server.shutdown()


def _ask(url: str, model: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", timeout=30, trust_env=False,
                      headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_a_5xx_falls_back_and_a_frozen_tier_is_left(door: tuple[str, dict[str, StandIn]]) -> None:
    url, tiers = door
    r = _ask(url, "broken")  # 500 -> frozen (no first byte, no health) -> good
    assert r.status_code == 200 and r.headers["x-mlx-stack-tier"] == "good"
    assert r.headers["x-mlx-stack-route"] == "fallback"
    assert tiers["broken"].seen == ["broken"] and tiers["frozen"].seen == ["frozen"]
    assert tiers["good"].seen == ["good"]  # the body names the tier that answers
    start = time.monotonic()
    r = _ask(url, "frozen")  # cooling down: skipped without waiting on it again
    assert r.headers["x-mlx-stack-tier"] in ("broken", "good") and time.monotonic() - start < 2
    assert tiers["frozen"].seen == ["frozen"]


def test_metrics_name_the_failures(door: tuple[str, dict[str, StandIn]]) -> None:
    url, _ = door
    text = httpx.get(url + "/metrics", headers={"x-api-key": KEY}, trust_env=False).text
    assert 'mlx_stack_gateway_server_errors_total{tier="frozen"} 1' in text
    assert 'mlx_stack_gateway_fallbacks_out_total{tier="broken"}' in text
    assert httpx.get(url + "/metrics", trust_env=False).status_code == 401


def _stream_body(events: int, pause: float = 0.0) -> dict:
    return {"model": "streamer", "stream": True, "max_tokens": events, "temperature": pause,
            "messages": [{"role": "user", "content": "hi"}]}


def test_a_slow_client_gets_every_byte_in_order(door: tuple[str, dict[str, StandIn]]) -> None:
    """8 MB streamed faster than the client reads: the front door stops reading from the
    tier while the client's buffer is full, and nothing is lost or reordered."""
    url, _ = door
    events = 8000
    with httpx.Client(timeout=60, trust_env=False) as client, client.stream(
            "POST", url + "/v1/chat/completions", json=_stream_body(events),
            headers={"Authorization": f"Bearer {KEY}"}) as r:
        assert r.status_code == 200 and r.headers["x-mlx-stack-tier"] == "streamer"
        time.sleep(1.5)  # let every buffer between the tier and us fill up
        raw = b"".join(r.iter_bytes())
    parts = raw.split(b"\n\n")
    assert parts[-2:] == [b"data: [DONE]", b""]
    numbers = [json.loads(p[6:])["choices"][0]["delta"]["content"][:6] for p in parts[:-2]]
    assert numbers == [f"{i:06d}" for i in range(events)]


def test_a_client_that_leaves_mid_stream_closes_the_tier_connection(
        door: tuple[str, dict[str, StandIn]]) -> None:
    url, tiers = door
    tiers["streamer"].cut.clear()
    with httpx.Client(timeout=60, trust_env=False) as client, client.stream(
            "POST", url + "/v1/chat/completions", json=_stream_body(4000, 0.005),
            headers={"Authorization": f"Bearer {KEY}"}) as r:
        assert r.status_code == 200
        next(r.iter_bytes())
    # the tier would stream for 20 s more; it sees its connection closed within seconds
    assert tiers["streamer"].cut.wait(10)


class _CutThenFinish(JSONHandler):
    """``cutter`` streams three chat chunks and drops the connection; ``finisher`` answers
    the continuation (``/v1/completions``) with the rest, ``[DONE]``, and then holds its
    stream open for ``HOLD_S`` before ending it, as a tier that is slow to close does."""

    HOLD_S = 4.0

    def do_GET(self) -> None:
        self._reply(200, {"status": "ok"})

    def _events(self, events: list[bytes], end: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for raw in events:
            self.wfile.write(b"%x\r\n%b\r\n" % (len(raw), raw))
            self.wfile.flush()
        if end:
            time.sleep(self.HOLD_S)
            self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/chat/completions":  # the cutter
            self._events([b"data: " + json.dumps({"id": "c1", "model": "cutter", "created": 1, "choices": [
                {"index": 0, "delta": {"content": word}, "finish_reason": None}]}).encode() + b"\n\n"
                for word in ("Once", " upon", " a")], end=False)
            return
        self._events([b'data: {"choices": [{"text": " time", "finish_reason": null}]}\n\n',
                      b'data: {"choices": [{"text": "", "finish_reason": "length"}]}\n\n',
                      b"data: [DONE]\n\n"], end=True)


def test_a_continuation_is_counted_even_when_the_client_leaves_on_done(tmp_path: Path) -> None:
    """The OpenAI SDK closes its connection as soon as it reads ``[DONE]``; the tier that
    finished a cut stream may end its own a moment later. The continuation is counted as
    it starts, so that departure (counted as client_gone) leaves it counted."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "tokenizer_config.json").write_text(json.dumps({
        "chat_template": "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"}))
    servers = {name: ThreadingHTTPServer(("127.0.0.1", 0), _CutThenFinish) for name in ("cutter", "finisher")}
    for server in servers.values():
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ups = [Upstream(name, f"org/{name}", f"http://127.0.0.1:{server.server_address[1]}", tokenizer=str(model))
           for name, server in servers.items()]
    try:
        with _front_door(tmp_path / "front-door.json", ups) as url:
            text = []
            with httpx.Client(timeout=30, trust_env=False) as client, client.stream(
                    "POST", url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                    json={"model": "cutter", "stream": True, "max_tokens": 50,
                          "messages": [{"role": "user", "content": "a story"}]}) as r:
                assert r.headers["x-mlx-stack-tier"] == "cutter"
                for line in r.iter_lines():
                    if line == "data: [DONE]":
                        break  # and leave, as the SDK does
                    if line.startswith("data: "):
                        for choice in json.loads(line[6:])["choices"]:
                            text.append(choice["delta"].get("content") or "")
            left = time.monotonic()
            assert "".join(text) == "Once upon a time"

            def counted() -> str | None:
                metrics = httpx.get(url + "/metrics", headers={"x-api-key": KEY}, trust_env=False).text
                return metrics if 'continuations_total{tier="finisher"} 1' in metrics else None

            metrics = poll_until(counted, 2.0)
            assert metrics is not None, "the continuation was not counted"
            assert time.monotonic() - left < _CutThenFinish.HOLD_S  # before the finisher ended its stream
            assert 'stream_errors_total{tier="cutter"} 1' in metrics
    finally:
        for server in servers.values():
            server.shutdown()

