"""Probes against a small local HTTP server (the fake only stands in for a model server)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlx_stack.system import ports, probes


class _Handler(BaseHTTPRequestHandler):
    mode = "ok"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: dict) -> None:  # type: ignore[type-arg]
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self._send(200 if self.path == "/health" else 404, {})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        if self.mode == "slow":
            time.sleep(1.0)
        if body.get("model") != "fast":
            self._send(404, {"error": "no such model"})
        elif self.headers.get("Authorization") not in (None, "Bearer sk-right"):
            self._send(401, {"error": "bad key"})
        else:
            self._send(200, {"choices": [{"message": {"content": "x"}}], "max": body["max_tokens"]})


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    _Handler.mode = "ok"


def test_health_and_completion(server: str) -> None:
    assert probes.health(server).ok
    assert not probes.health(server, route="/nope").ok
    ok = probes.completion(server, "fast")
    assert ok.ok and ok.latency_s < 1
    assert probes.completion(server, "fast", api_key="sk-right").ok
    bad_key = probes.completion(server, "fast", api_key="sk-wrong")
    assert not bad_key.ok and bad_key.status_code == 401
    wrong_model = probes.completion(server, "standard")
    assert not wrong_model.ok and wrong_model.error == "HTTP 404"


def test_timeouts_are_short_and_parallel(server: str) -> None:
    _Handler.mode = "slow"
    start = time.monotonic()
    results = probes.in_parallel([lambda: probes.completion(server, "fast", timeout=0.3)] * 4)
    assert time.monotonic() - start < 1.0  # four probes, in parallel, each cut at 0.3 s
    assert all(not r.ok and r.error == "timed out" for r in results)


def test_in_parallel_runs_the_last_call_here_and_every_call_to_its_end() -> None:
    ran: list[str] = []

    def where(name: str, fail: bool = False) -> str:
        ran.append(name)
        if fail:
            raise ValueError(name)
        return threading.current_thread().name

    first, last = probes.in_parallel([lambda: where("a"), lambda: where("b")])
    assert last == threading.current_thread().name and first != last
    with pytest.raises(ValueError, match=r"^a$"):  # the first failure in the calls' order
        probes.in_parallel([lambda: where("a", True), lambda: where("b", True), lambda: where("c")])
    assert sorted(ran) == ["a", "a", "b", "b", "c"]
    assert probes.in_parallel([]) == []


def test_refused_port() -> None:
    port = ports.free_port()
    result = probes.completion(f"http://127.0.0.1:{port}", "fast", timeout=1)
    assert not result.ok and result.error == "connection refused"
    assert ports.is_free(port)
