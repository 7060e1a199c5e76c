"""`mlx-stack watch` refuses to run twice."""

from __future__ import annotations

from mlx_stack.paths import Paths
from mlx_stack.system.locks import file_lock


def test_second_watchdog_exits_5(run, isolated_home: Paths) -> None:
    with file_lock(isolated_home.watchdog_lock_file, timeout=0):
        r = run("watch", "--interval", "1")
        assert r.exit_code == 5
        assert "a watchdog is already running" in r.stderr
        r = run("watch", "--daemon")
        assert r.exit_code == 5
