"""A real front door whose peer is a small stand-in, for the faults a real peer cannot make
on demand: a peer that answers garbage, stalls (not even its model list answers), closes
mid-stream; and the hop marker, the key and the model name on the wire. Seconds, no models.

The front door's own tier is a stand-in too; ``prefer_peers`` puts the peer first, so every
request tries it before the local tier. A second peer is a real front door serving https
(gateway.tls-cert/key, a self-signed certificate given to the first as its CA file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import pytest

from mlx_stack.core.front_door import Upstream
from mlx_stack.core.gateway_config import render_routes
from mlx_stack.core.routing import default_rules
from mlx_stack.paths import Paths
from mlx_stack.system import ports, secrets
from tests.helpers import JSONHandler, self_signed, wait_for

pytestmark = pytest.mark.integration
KEY = "sk-test-front-door-key-0123456789"
PEER_KEY = "sk-test-peer-key-abcdefghijklmnop"


def _chat(model: str, text: str) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": model, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class Node:
    """A stand-in: ``tier`` (a vllm-mlx-like chat server) or ``peer`` (a front door that
    serves the tiers ``fast`` and ``bonly`` and checks the key); ``mood`` switches its faults."""

    def __init__(self, kind: str) -> None:
        self.mood = "ok"
        self.seen: list[tuple[str, dict[str, str], dict]] = []  # (path, headers, body)
        outer = self

        class Handler(JSONHandler):
            def do_GET(self) -> None:
                if outer.mood == "stall":
                    time.sleep(20)
                    return
                if kind == "peer" and self.headers.get("Authorization") != f"Bearer {PEER_KEY}":
                    self._reply(401, {"error": "key"})
                    return
                if self.path == "/v1/models":
                    models = [{"id": "fast"}, {"id": "bonly"}, {"id": "auto"}]
                    self._reply(200, {"object": "list", "data": models})
                else:
                    self._reply(200, {"status": "ok"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                outer.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if outer.mood == "stall":
                    time.sleep(20)
                    return
                if outer.mood == "garbage":
                    self.wfile.write(b"\x16\x03 this is not HTTP at all\r\n\r\n")
                    self.close_connection = True
                    return
                if body.get("stream"):
                    self._stream(body["model"], cut=outer.mood == "cut")
                    return
                self.send_response(200)
                raw = json.dumps(_chat(body["model"], f"{kind} says hi")).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                if kind == "peer":
                    self.send_header("x-mlx-stack-tier", body["model"])
                    self.send_header("x-mlx-stack-route", "direct")
                self.end_headers()
                self.wfile.write(raw)

            def _stream(self, model: str, *, cut: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(5):
                    delta = {"index": 0, "delta": {"content": f"{kind}{i} "}, "finish_reason": None}
                    data = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": model,
                            "choices": [delta]}
                    raw = f"data: {json.dumps(data)}\n\n".encode()
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(raw), raw))
                    self.wfile.flush()
                    if cut and i == 2:
                        self.close_connection = True
                        self.connection.shutdown(2)  # closed mid-answer, no terminating chunk
                        return
                done = b"data: [DONE]\n\n"
                self.wfile.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(done), done))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Door:
    def __init__(self, url: str, tier: Node, peer: Node, procs: list[subprocess.Popen[str]]) -> None:
        self.url, self.tier, self.peer, self.procs = url, tier, peer, procs

    def ask(self, model: str = "fast", **headers: str) -> httpx.Response:
        return httpx.post(self.url + "/v1/chat/completions", timeout=60, trust_env=False,
                          headers={"Authorization": f"Bearer {KEY}", **headers},
                          json={"model": model, "messages": [{"role": "user", "content": "hi"}]})

    def peer_up(self, peer: str = "b") -> bool:
        try:
            text = httpx.get(self.url + "/metrics", headers={"x-api-key": KEY}, trust_env=False).text
        except httpx.HTTPError:  # not listening yet
            return False
        return f'mlx_stack_gateway_peer_up{{peer="{peer}"}} 1' in text

    def healed(self) -> None:
        self.peer.mood = "ok"
        wait_for(self.peer_up, 40, "the peer back after its cool-down")


def _front_door(home: Path, tier: Upstream, peers: list[dict], key: str,
                *tls: str) -> tuple[int, subprocess.Popen[str]]:
    doc = render_routes([tier], [tier.name], default_rules([tier.name]), None)
    doc["peers"], doc["prefer_peers"] = peers, True
    routes = home / "generated" / "front-door.json"
    routes.parent.mkdir(parents=True)
    routes.write_text(json.dumps(doc))
    port = ports.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlx_stack.gateway", "--routes", str(routes),
                             "--port", str(port), "--home", str(home), *tls],
                            env={**os.environ, "MLX_STACK_GATEWAY_KEY": key},
                            stderr=(home / "front-door.log").open("w"), text=True)
    return port, proc


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    home = tmp_path_factory.mktemp("peers-faults")
    tier, peer, secure_tier = Node("tier"), Node("peer"), Node("tier")
    cert, cert_key = self_signed(tmp_path_factory.mktemp("tls"))
    secure_port, secure = _front_door(home / "secure", Upstream("secure", "org/s", secure_tier.url), [],
                                      PEER_KEY + "-tls", "--tls-cert", str(cert), "--tls-key", str(cert_key))
    secrets.write_secret(Paths(home), "peer-b", PEER_KEY)
    secrets.write_secret(Paths(home), "peer-s", PEER_KEY + "-tls")
    port, proc = _front_door(home, Upstream("fast", "org/fast", tier.url),
                             [{"name": "b", "url": peer.url, "ca_file": None},
                              {"name": "s", "url": f"https://127.0.0.1:{secure_port}", "ca_file": str(cert)}],
                             KEY)
    d = Door(f"http://127.0.0.1:{port}", tier, peer, [proc, secure])
    try:
        wait_for(lambda: proc.poll() is None and d.peer_up(), 60, "the front door with its peer up")
        yield d
    finally:
        for p in d.procs:
            p.terminate()
            p.wait(10)
        for n in (tier, peer, secure_tier):
            n.server.shutdown()


def test_a_peer_over_https(door: Door) -> None:
    wait_for(lambda: door.peer_up("s"), 30, "the https peer up")
    r = door.ask("secure")
    assert r.status_code == 200 and r.headers["x-mlx-stack-node"] == "s", r.text
    assert r.json()["choices"][0]["message"]["content"] == "tier says hi"


def test_the_peer_answers_with_its_key_and_the_hop_marker(door: Door) -> None:
    client = openai.OpenAI(base_url=door.url + "/v1", api_key=KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-mlx-stack-node"] == "b" and raw.headers["x-mlx-stack-tier"] == "fast"
    assert raw.headers["x-mlx-stack-route"] == "peer"
    assert raw.parse().choices[0].message.content == "peer says hi"
    _, headers, body = door.peer.seen[-1]
    assert headers["authorization"] == f"Bearer {PEER_KEY}" and headers["x-mlx-stack-hop"] == "1"
    assert body["model"] == "fast" and KEY not in json.dumps(headers)
    chunks = list(client.chat.completions.create(model="fast", stream=True,
                                                 messages=[{"role": "user", "content": "hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "peer0 peer1 peer2 peer3 peer4 "
    r = door.ask("bonly")  # a tier only the peer serves
    assert r.status_code == 200 and r.headers["x-mlx-stack-node"] == "b"
    ids = [m["id"] for m in httpx.get(door.url + "/v1/models", headers={"x-api-key": KEY}).json()["data"]]
    assert "bonly" in ids and ids.count("fast") == 1


def test_a_request_from_a_peer_is_never_forwarded(door: Door) -> None:
    seen = len(door.peer.seen)
    r = door.ask("fast", **{"x-mlx-stack-hop": "1"})
    assert r.status_code == 200 and "x-mlx-stack-node" not in r.headers
    assert r.headers["x-mlx-stack-tier"] == "fast"
    r = door.ask("bonly", **{"x-mlx-stack-hop": "1"})
    assert r.status_code == 404  # only the peer serves it: a forwarded request is not forwarded again
    hop = {"x-api-key": KEY, "x-mlx-stack-hop": "1"}
    ids = [m["id"] for m in httpx.get(door.url + "/v1/models", headers=hop).json()["data"]]
    assert "bonly" not in ids  # a peer asking sees this node's own models only
    assert len(door.peer.seen) == seen


def test_a_peer_answering_garbage_falls_back_and_cools_down(door: Door) -> None:
    door.peer.mood = "garbage"
    r = door.ask()
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "tier says hi"
    assert "b:" in r.headers["x-mlx-stack-fallback-reason"] and "x-mlx-stack-node" not in r.headers
    seen = len(door.peer.seen)
    assert door.ask().status_code == 200 and len(door.peer.seen) == seen  # cooling: not tried
    assert not door.peer_up()
    door.healed()


def test_a_stalled_peer_costs_seconds_once(door: Door) -> None:
    door.peer.mood = "stall"
    start = time.monotonic()
    r = door.ask()
    took = time.monotonic() - start
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "tier says hi"
    assert took < 12, took  # the first-byte deadline, then a health check of a few seconds
    start = time.monotonic()
    r = door.ask("bonly")  # only the cooling peer serves it: refused at once, no hang
    assert r.status_code in (404, 503) and time.monotonic() - start < 2
    door.healed()


def test_a_peer_closing_mid_stream_ends_the_stream_with_an_error_event(door: Door) -> None:
    door.peer.mood = "cut"
    with httpx.Client(timeout=60, trust_env=False) as client, client.stream(
            "POST", door.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
            json={"model": "fast", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status_code == 200 and r.headers["x-mlx-stack-node"] == "b"
        raw = b"".join(r.iter_bytes())
    assert b"peer0" in raw and b"peer2" in raw and b'"error"' in raw  # well-formed: ends with an error event
    assert not door.peer_up()
    door.healed()


def test_metrics_show_the_peer(door: Door) -> None:
    text = httpx.get(door.url + "/metrics", headers={"x-api-key": KEY}, trust_env=False).text
    assert 'mlx_stack_gateway_peer_tier{peer="b",tier="bonly"} 1' in text
    assert 'mlx_stack_gateway_requests_total{tier="fast@b"}' in text
    assert PEER_KEY not in text
