"""Busy or wedged, on real processes: a stand-in server whose completions either burn
CPU for a long time (busy) or hang without using any (wedged).

The stand-in replaces `vllm-mlx` through an overlay of the venv (tests/overlay_venv.py);
its behaviour is read from a mode file at each request. The watchdog, its CPU
measurement, probes, pid files and signals are the real ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import stack_store
from mlx_stack.system import pidfile
from tests.helpers import cli_command, cli_env, free_port, wait_for
from tests.overlay_venv import make_overlay

pytestmark = pytest.mark.integration

SERVER = r'''
import http.server, json, os, sys, time
port = int(sys.argv[sys.argv.index("--port") + 1])
mode_file = os.environ["FAKE_MODE_FILE"]

class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self._send(200 if self.path == "/health" else 404, {"status": "healthy"})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        mode = open(mode_file).read().strip()
        if mode == "busy":   # a long generation: the CPU works, the answer is late
            end = time.monotonic() + 6
            while time.monotonic() < end:
                sum(i * i for i in range(10000))
        elif mode == "hang":  # wedged: no answer, no CPU
            time.sleep(3600)
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": "x"}}]})

print("fake server on", port, flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
'''


def test_busy_is_left_alone_and_wedged_is_restarted(tmp_path: Path) -> None:
    server = tmp_path / "server.py"
    server.write_text(SERVER)
    python = make_overlay(tmp_path / "venv", f'#!/bin/sh\nexec "{os.path.realpath(sys.executable)}" '
                                             f'"{server}" "$@"\n')
    mode = tmp_path / "mode"
    mode.write_text("ok")
    model = tmp_path / "model"
    model.mkdir()
    p = Paths(home=tmp_path / "home")
    stack = Stack(tiers=(Tier("fast", "fake", str(model), free_port()),), fallback_order=("fast",),
                  gateway=Gateway(port=free_port()))
    stack_store.save(p, stack)
    pidfile.write(p.run_dir, pidfile.PidRecord("fast", 999_999, 1.0, ("vllm-mlx",), stack.tiers[0].port))
    env = cli_env(p, drop=["MLX_STACK_WATCHDOG_LOGGED"], FAKE_MODE_FILE=str(mode))
    wd = subprocess.Popen(
        cli_command("watch", "--interval", "1", "--probe-timeout", "2", "--wedge-probes", "3",
                    "--restart-delay", "0.2", python=python),
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    log = p.logs_dir / "watchdog.log"

    def state() -> str | None:
        try:
            return json.loads((p.run_dir / "watchdog.json").read_text())["services"]["fast"]["state"]
        except (OSError, ValueError, KeyError):
            return None

    def pid() -> int | None:
        rec = pidfile.read(p.run_dir, "fast")
        return rec.pid if rec is not None and pidfile.is_ours(rec) else None

    def wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
        def check() -> bool:
            assert wd.poll() is None, "the watchdog died"
            return cond()

        try:
            wait_for(check, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}: {log.read_text()}") from None

    try:
        wait(lambda: state() == "healthy", 60, "healthy")
        first = pid()
        mode.write_text("busy")
        wait(lambda: state() == "busy", 30, "busy")
        time.sleep(5)  # more failed probes, all with the CPU working
        assert pid() == first and "fast: stop" not in log.read_text()
        mode.write_text("hang")
        wait(lambda: "fast: stop (wedged: 3 probes" in log.read_text(), 60, "the wedge to be detected")
        mode.write_text("ok")
        wait(lambda: state() == "healthy" and pid() not in (None, first), 60, "healthy again")
        text = log.read_text()
        assert "fast: busy: probe failed (timed out) but the server is working" in text
        assert "no progress (1/3)" in text and "no progress (2/3)" in text
    finally:
        wd.send_signal(signal.SIGTERM)
        try:
            wd.wait(20)
        except subprocess.TimeoutExpired:
            wd.kill()
        current = pid()
        if current is not None:
            os.killpg(current, signal.SIGKILL)
