"""probe_service's states, against a small fake model server (it only injects delays)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import health, service_control, stack_store
from mlx_stack.system import pidfile, ports


class _Slow(BaseHTTPRequestHandler):
    delay = 0.0

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(type(self).delay)
        raw = json.dumps({"choices": [{"message": {"content": "x"}}]}).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the probe gave up
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)


@pytest.fixture
def tier_server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    _Slow.delay = 0.0


def _stack(p: Paths, port: int) -> Stack:
    stack = Stack((Tier("fast", "org/small-model", "/m", port),), ("fast",), Gateway(port=ports.free_port()))
    stack_store.save(p, stack)
    return stack


def _state(p: Paths) -> service_control.ServiceStatus:
    return service_control.probe_service(p, "fast", timeout=0.5)


def test_states(isolated_home: Paths, tier_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    _stack(isolated_home, tier_server)
    assert _state(isolated_home).state == "stopped"

    # This test process plays the running server's pid: alive, and started when recorded.
    pidfile.write(isolated_home.run_dir, pidfile.record_for("fast", os.getpid(), ["vllm-mlx"], tier_server))
    healthy = _state(isolated_home)
    assert healthy.state == "healthy" and healthy.pid == os.getpid() and healthy.model == "org/small-model"

    monkeypatch.setattr(health, "DEGRADED_AFTER_S", 0.1)
    _Slow.delay = 0.2
    slow = _state(isolated_home)
    assert slow.state == "degraded" and slow.detail == "slow to answer"

    _Slow.delay = 1.0
    stuck = _state(isolated_home)
    assert stuck.state == "down" and stuck.detail == "timed out"

    pidfile.write(isolated_home.run_dir, pidfile.PidRecord("fast", os.getpid(), 1.0, ("vllm-mlx",)))
    assert _state(isolated_home).state == "crashed"  # the recorded process is gone (pid reused)
