"""`mlx-stack watch --daemon`: detaches, holds the lock, logs to a rotated file, stops on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from mlx_stack.paths import Paths
from mlx_stack.services import watchdog
from mlx_stack.system.locks import is_held
from tests.helpers import cli_command, cli_env, poll_until, wait_for

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_daemon_detaches_and_stops_cleanly(tmp_path: Path) -> None:
    p = Paths(home=tmp_path / "home")
    env = cli_env(p, drop=[watchdog.LOGGED_ENV])
    cmd = cli_command("watch", "--daemon", "--interval", "0.5")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    m = re.search(r"pid (\d+)", r.stderr)
    assert m, r.stderr
    pid = int(m.group(1))
    try:
        assert is_held(p.watchdog_lock_file)
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 5 and "already running" in again.stderr
        log = p.logs_dir / "watchdog.log"
        wait_for(lambda: log.exists() and f"pid {pid}" in log.read_text(), 20, "the daemon to log")
    finally:
        os.kill(pid, signal.SIGTERM)
        poll_until(lambda: not _alive(pid), 20)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert not _alive(pid)
    assert not is_held(p.watchdog_lock_file)
    wait_for(lambda: "stopped" in (p.logs_dir / "watchdog.log").read_text(), 10,
             "the last lines to reach the log")
