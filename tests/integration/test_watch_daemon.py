"""`mlx-stack watch --daemon`: detaches, holds the lock, logs to a rotated file, stops on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlx_stack.paths import Paths
from mlx_stack.services import watchdog

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_daemon_detaches_and_stops_cleanly(tmp_path: Path) -> None:
    p = Paths(home=tmp_path / "home")
    env = {**os.environ, "MLX_STACK_HOME": str(p.home)}
    env.pop(watchdog.LOGGED_ENV, None)
    cmd = [sys.executable, "-m", "mlx_stack", "watch", "--daemon", "--interval", "0.5"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    m = re.search(r"pid (\d+)", r.stderr)
    assert m, r.stderr
    pid = int(m.group(1))
    try:
        assert watchdog.lock_held(watchdog.lock_path(p))
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 5 and "already running" in again.stderr
        log = p.logs_dir / "watchdog.log"
        deadline = time.monotonic() + 20
        while not (log.exists() and f"pid {pid}" in log.read_text()):
            assert time.monotonic() < deadline, "the daemon did not log"
            time.sleep(0.1)
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert not _alive(pid)
    assert not watchdog.lock_held(watchdog.lock_path(p))
    deadline = time.monotonic() + 10
    while "stopped" not in (p.logs_dir / "watchdog.log").read_text():
        assert time.monotonic() < deadline, "the last lines did not reach the log"
        time.sleep(0.1)
