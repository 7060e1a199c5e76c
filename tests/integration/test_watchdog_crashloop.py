"""A service that crashes at start every time: backoff honoured, then flapping, no storm.

The crashing "vllm-mlx" is a tiny fake command: the watchdog runs from a copy of
this virtual environment's layout (same interpreter and site-packages) whose bin/
holds a `vllm-mlx` script that prints a line and exits 1. Everything else (the
watchdog process, pid files, the log writer, signals) is real.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import stack_store
from mlx_stack.system import pidfile
from tests.helpers import cli_command, cli_env, free_port
from tests.overlay_venv import make_overlay

pytestmark = pytest.mark.integration


FAKE = "#!/bin/sh\necho \"fake vllm-mlx: cannot load $2\"\nexit 1\n"


def test_crash_at_start_backs_off_then_flaps_without_a_storm(tmp_path: Path) -> None:
    python = make_overlay(tmp_path / "venv", FAKE)
    p = Paths(home=tmp_path / "home")
    broken = tmp_path / "broken-model"  # exists (so `up` checks pass); the fake server crashes on it
    broken.mkdir()
    stack = Stack(tiers=(Tier("fast", "broken", str(broken), free_port()),),
                  fallback_order=("fast",), gateway=Gateway(port=free_port()))
    stack_store.save(p, stack)
    # It should run (a pid file whose process is gone: as after a crash or a reboot).
    pidfile.write(p.run_dir, pidfile.PidRecord("fast", 999_999, 1.0, ("vllm-mlx",), stack.tiers[0].port))
    env = cli_env(p, drop=["MLX_STACK_WATCHDOG_LOGGED"])
    delay, max_restarts, cooldown = 0.3, 3, 4.0
    wd = subprocess.Popen(
        cli_command("watch", "--interval", "0.5", "--restart-delay", str(delay), "--max-restarts",
                    str(max_restarts), "--flap-window", "120", "--cooldown", str(cooldown), python=python),
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    state_file = p.run_dir / "watchdog.json"
    log_file = p.logs_dir / "watchdog.log"

    def state() -> dict:
        try:
            return json.loads(state_file.read_text())["services"]["fast"]
        except (OSError, ValueError, KeyError):
            return {}

    try:
        deadline = time.monotonic() + 120
        while state().get("state") != "flapping":
            assert wd.poll() is None, "the watchdog died"
            assert time.monotonic() < deadline, f"never flapping: {state()}"
            time.sleep(0.1)
        flapping_at = time.monotonic()
        st = state()
        assert "3 restarts in 120 s" in st["reason"] and "exited" in st["reason"]
        assert any(f"fake vllm-mlx: cannot load {broken}" in ln for ln in st["last_log_lines"])
        # During the cool-down: no start at all.
        starts_before = _start_times(log_file.read_text())
        time.sleep(cooldown / 2)
        assert _start_times(log_file.read_text()) == starts_before
        # After it: one more try on its own.
        while len(_start_times(log_file.read_text())) == len(starts_before):
            assert time.monotonic() - flapping_at < cooldown + 30, "no retry after the cool-down"
            time.sleep(0.1)
    finally:
        wd.send_signal(signal.SIGTERM)
        try:
            assert wd.wait(20) == 0
        finally:
            if wd.poll() is None:
                wd.kill()
                wd.wait()
    text = log_file.read_text()
    starts = starts_before
    # 1 start + max_restarts restarts, separated by the doubling delays (plus the poll that saw the crash).
    assert len(starts) == 1 + max_restarts, text
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    for n, gap in enumerate(gaps, start=1):
        assert gap >= delay * 2 ** (n - 1) - 0.05, (n, gaps)
    print(f"\ncrash loop: starts {len(starts)}, gaps {[round(g, 2) for g in gaps]} s, then flapping")
    assert "FLAPPING" in text and "flapping cleared: cool-down over" in text
    assert "got SIGTERM" in text


def _start_times(text: str) -> list[float]:
    """Times (s) of the watchdog's start actions, from its log lines' timestamps."""
    stamps = re.findall(r"^(\S+) watchdog: fast: start ", text, re.M)
    return [datetime.fromisoformat(s).timestamp() for s in stamps]
