"""Faults around the stack's processes: Ctrl-C during `up`, lost and corrupt pid files,
a stale pid file naming the dead leader of someone else's live process group.

Ctrl-C uses stand-in servers that never become healthy (a real one would be ready
before the signal could land mid-wait): a copy of this virtual environment's layout
whose bin/ holds them (tests/overlay_venv.py); `up`, pid files, markers, the log
writers and the signals are real. The lost-pid-file case runs a real vllm-mlx tier.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlx_stack.cli.app import app
from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_store
from mlx_stack.system import identity, pidfile, ports, processes
from tests.helpers import cli_command, cli_env, wait_for
from tests.overlay_venv import make_overlay

pytestmark = pytest.mark.integration

NEVER_READY = (f"#!{os.path.realpath(sys.executable)}\nimport time\n"
               "print('stand-in: loading forever', flush=True)\ntime.sleep(600)\n")



@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_during_up_stops_what_it_started(tmp_path: Path, sig: int) -> None:
    python = make_overlay(tmp_path / "venv", NEVER_READY)
    (python.parent / "litellm").write_text(NEVER_READY)
    (python.parent / "litellm").chmod(0o755)
    p = Paths(home=tmp_path / "home")
    model = tmp_path / "model"
    model.mkdir()
    stack = Stack((Tier("fast", "stand-in", str(model), ports.free_port()),), ("fast",),
                  Gateway(port=ports.free_port()))
    stack_store.save(p, stack)
    proc = subprocess.Popen(cli_command("up", python=python), env=cli_env(p, NO_COLOR="1"), text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len([m for m in identity.find(p.home) if m.is_leader]) >= 2,
                 60, "both stand-ins to be started")
        time.sleep(0.5)  # inside the health waits
        sent = time.monotonic()
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
        print(f"\n{signal.Signals(sig).name} during up: exit {proc.returncode} after {took:.2f} s")
        assert proc.returncode == 130, err
        assert "up interrupted" in err and "stopped" in err, err
        assert "Traceback" not in err
        assert took < 15  # acts at once; SIGTERM -> exit of the stand-ins is the rest
        assert identity.find(p.home) == []  # nothing this up started is left
        assert not list(p.run_dir.glob("*.pid"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for m in identity.find(p.home):
            os.kill(m.pid, signal.SIGKILL)


_GROUP = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "time.sleep(120)\n"
)


def test_down_never_signals_the_live_group_of_a_dead_leader(isolated_home: Paths) -> None:
    """A pid file left from a crash names a pid that later led another program's group;
    that leader died, its group lives on. `down` removes the pid file and signals nothing."""
    other = subprocess.Popen([sys.executable, "-c", _GROUP], process_group=0)
    try:
        wait_for(lambda: len(processes.group_members(other.pid)) >= 2, 60, "the group's child to start")
        record = pidfile.PidRecord("fast", other.pid, 12345.0, ("vllm-mlx", "serve"), 0)
        pidfile.write(isolated_home.run_dir, record)
        other.kill()
        other.wait()
        survivors = processes.group_members(other.pid)
        assert survivors
        r = CliRunner().invoke(app, ["down"], catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
        time.sleep(0.5)
        assert sorted(processes.group_members(other.pid)) == sorted(survivors)
        assert pidfile.read(isolated_home.run_dir, "fast") is None
    finally:
        for pid in processes.group_members(other.pid):
            os.kill(pid, signal.SIGKILL)


def test_lost_and_corrupt_pid_files_of_a_real_tier(isolated_home: Paths, tmp_path: Path) -> None:
    """A real vllm-mlx tier: its log writer killed (seen, restarted); then its pid file
    deleted, then corrupted: status still sees it healthy, up adopts it (no port
    clash), down stops it and the port is free."""
    from mlx_stack.services import watchdog
    from mlx_stack.services.demo_models import build_random_model
    from mlx_stack.services.service_control import probe_service, start_service

    model = build_random_model(tmp_path / "tiny")
    stack = Stack((Tier("fast", "tiny", str(model), ports.free_port()),), ("fast",),
                  Gateway(port=ports.free_port()))
    stack_store.save(isolated_home, stack)
    runner = CliRunner()
    try:
        first = start_service(isolated_home, "fast", stack=stack, timeout=300)
        # Its log writer killed: status says so, the watchdog restarts the tier.
        writer = identity.writers(isolated_home.home, "fast")[0]
        os.kill(writer.pid, signal.SIGKILL)
        wait_for(lambda: identity.writer_state(isolated_home.home, "fast") == identity.WRITER_GONE,
                 60, "the log writer to be gone")
        detail = probe_service(isolated_home, "fast", stack=stack).detail or ""
        assert "log writer gone" in detail
        watchdog.tend_log_writers(isolated_home, stack)
        assert not pidfile.is_ours(pidfile.read(isolated_home.run_dir, "fast"))  # stopped, still wanted
        record = start_service(isolated_home, "fast", stack=stack, timeout=300)  # the next round
        assert record.pid != first.pid
        assert identity.writer_state(isolated_home.home, "fast") == identity.WRITER_OK
        port = stack.tiers[0].port
        pidfile.remove(isolated_home.run_dir, "fast")  # lost
        states = {s.name: s for s in lifecycle.status(isolated_home).services}
        assert states["fast"].state == "healthy" and states["fast"].pid == record.pid
        again = start_service(isolated_home, "fast", stack=stack, timeout=60)  # adopts, no clash
        assert again.pid == record.pid
        assert pidfile.is_ours(pidfile.read(isolated_home.run_dir, "fast"))
        pidfile.pid_path(isolated_home.run_dir, "fast").write_bytes(b"\xff\xfe{corrupt")
        r = runner.invoke(app, ["down"], catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
        assert "stopped fast" in r.stderr
        assert identity.find(isolated_home.home) == []
        assert ports.is_free(port)
        # A port some other program holds: down never says "stopped" for it.
        import socket

        with socket.socket() as holder:
            holder.bind(("127.0.0.1", port))
            holder.listen()
            pidfile.write(isolated_home.run_dir, replace(record, start_time=1.0))
            r = runner.invoke(app, ["down"], catch_exceptions=False)
            assert r.exit_code == 7, r.stderr
            assert "still answering after down: fast" in r.stderr
    finally:
        lifecycle.down(isolated_home, grace=5)
        for m in identity.find(isolated_home.home):
            os.kill(m.pid, signal.SIGKILL)


CHATTY = f"""#!{os.path.realpath(sys.executable)}
# A stand-in tier that logs 20 kB per request through `logging`, as vllm-mlx logs.
import json, logging, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
logging.basicConfig(level=logging.INFO)
log = logging.getLogger("stand-in")
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        log.info("request " + "x" * 20000)
    def _answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self._answer({{"status": "ok"}})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer({{"choices": [{{"index": 0, "message": {{"role": "assistant", "content": "hi"}}}}]}})
port = int(sys.argv[sys.argv.index("--port") + 1])
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def test_a_stopped_log_writer_never_wedges_its_tier(tmp_path: Path) -> None:
    """SIGSTOP on the writer: the pipe fills (20 kB a request, far past its size), the
    tier keeps answering; status says so; the watchdog's round resumes the writer."""
    import httpx

    from mlx_stack.services import watchdog
    from mlx_stack.services.service_control import probe_service, start_service

    python = make_overlay(tmp_path / "venv", CHATTY)
    p = Paths(home=tmp_path / "home")
    model = tmp_path / "model"
    model.mkdir()
    stack = Stack((Tier("fast", "stand-in", str(model), ports.free_port()),), ("fast",),
                  Gateway(port=ports.free_port()))
    stack_store.save(p, stack)
    env = cli_env(p)
    code = ("from mlx_stack.paths import paths\n"
            "from mlx_stack.services.service_control import start_service\n"
            "start_service(paths(), 'fast', timeout=60)\n")
    # Started by the overlay's python, so its bin/vllm-mlx (the stand-in) runs.
    subprocess.run([str(python), "-c", code], env=env, check=True, timeout=120)
    try:
        writer = identity.writers(p.home, "fast")[0]
        os.kill(writer.pid, signal.SIGSTOP)
        wait_for(lambda: identity.writer_state(p.home, "fast") == identity.WRITER_STOPPED,
                 60, "the log writer to be stopped")
        url = f"http://127.0.0.1:{stack.tiers[0].port}/v1/chat/completions"
        with httpx.Client(timeout=10) as client:
            for _ in range(150):  # 3 MB of log into a 1 MB (at most) pipe
                r = client.post(url, json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code == 200
        assert "log writer stopped" in (probe_service(p, "fast", stack=stack).detail or "")
        watchdog.tend_log_writers(p, stack)
        assert identity.writer_state(p.home, "fast") == identity.WRITER_OK
        assert start_service(p, "fast", stack=stack, wait=False).pid == pidfile.read(p.run_dir, "fast").pid
    finally:
        lifecycle.down(p, grace=5)
        for m in identity.find(p.home):
            os.kill(m.pid, signal.SIGKILL)
