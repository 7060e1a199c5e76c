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
from tests.overlay_venv import make_overlay

pytestmark = pytest.mark.integration

NEVER_READY = f"#!{os.path.realpath(sys.executable)}\nimport time\nprint('stand-in: loading forever', flush=True)\ntime.sleep(600)\n"


def _wait_for(cond, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


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
    env = {**os.environ, "MLX_STACK_HOME": str(p.home), "NO_COLOR": "1"}
    proc = subprocess.Popen([str(python), "-m", "mlx_stack", "up"], env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _wait_for(lambda: len([m for m in identity.find(p.home) if m.is_leader]) >= 2)
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
        assert _wait_for(lambda: len(processes.group_members(other.pid)) >= 2)
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
    """A real vllm-mlx tier whose pid file is deleted, then corrupted: status still sees
    it healthy, up adopts it (no port clash), down stops it and the port is free."""
    from mlx_stack.services.demo_models import build_random_model
    from mlx_stack.services.service_control import start_service

    model = build_random_model(tmp_path / "tiny")
    stack = Stack((Tier("fast", "tiny", str(model), ports.free_port()),), ("fast",),
                  Gateway(port=ports.free_port()))
    stack_store.save(isolated_home, stack)
    runner = CliRunner()
    try:
        record = start_service(isolated_home, "fast", stack=stack, timeout=300)
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
