"""Paths owns every location: the names on disk stay what they were (users and the
front door find files by them)."""

from __future__ import annotations

from pathlib import Path

from mlx_stack.paths import Paths
from mlx_stack.system import pidfile


def test_every_location_under_the_home() -> None:
    p = Paths(Path("/h"))
    got = {
        "routes": p.routes_file, "litellm": p.litellm_config_file, "context": p.dashboard_context_file,
        "log": p.log_file("fast"), "watchdog log": p.watchdog_log, "agent log": p.watchdog_agent_log,
        "pid": p.pid_file("fast"), "watchdog state": p.watchdog_state_file,
        "watchdog lock": p.watchdog_lock_file, "on-demand": p.on_demand_state_file,
        "secret": p.secret_file("gateway-key"), "pulled lock": p.pulled_lock_file,
        "demo model": p.demo_model_dir("fast"), "prefix cache": p.tier_prefix_cache("standard"),
    }
    assert {k: str(v) for k, v in got.items()} == {
        "routes": "/h/generated/front-door.json", "litellm": "/h/generated/litellm.yaml",
        "context": "/h/generated/dashboard.json", "log": "/h/logs/fast.log",
        "watchdog log": "/h/logs/watchdog.log", "agent log": "/h/logs/watchdog.agent.log",
        "pid": "/h/run/fast.pid", "watchdog state": "/h/run/watchdog.json",
        "watchdog lock": "/h/run/watchdog.lock", "on-demand": "/h/run/on-demand.json",
        "secret": "/h/secrets/gateway-key", "pulled lock": "/h/.pulled.lock",
        "demo model": "/h/models/demo-fast", "prefix cache": "/h/cache/prefix/standard",
    }


def test_pid_files_are_where_pidfile_writes_them(isolated_home: Paths) -> None:
    assert isolated_home.pid_files() == []  # no run folder yet
    rec = pidfile.PidRecord("fast", 1, 0.0, ("x",))
    assert pidfile.write(isolated_home.run_dir, rec) == isolated_home.pid_file("fast")
    assert pidfile.pid_path(Path("/elsewhere"), "fast") == Path("/elsewhere/fast.pid")
    assert isolated_home.pid_files() == [isolated_home.pid_file("fast")]
