"""The watchdog loop's plumbing: state file, status overlay, lock handling, errors."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from mlx_stack.core.watchdog import Action, ActionKind, Decision, Policy, Record, State
from mlx_stack.paths import Paths
from mlx_stack.services import watchdog, watchdog_state
from mlx_stack.system import pidfile
from mlx_stack.system.locks import file_lock


@dataclass(frozen=True)
class Row:  # the fields of lifecycle's ServiceStatus that overlay() touches
    name: str
    state: str
    detail: str | None = None


def _flapping_state(p: Paths) -> None:
    p.logs_dir.mkdir(parents=True)
    text = "loading\nTraceback (most recent call last)\nValueError: bad model\n"
    (p.logs_dir / "fast.log").write_text(text)
    recs = {
        "fast": Record(State.FLAPPING, since=100, reason="5 restarts in 600 s, last: exited", failures=6,
                       restarts=(90, 95), next_start=700),
        "standard": Record(State.BACKOFF, since=100, reason="exited", failures=1, next_start=110),
        "gateway": Record(State.HEALTHY, since=50),
    }
    watchdog_state.write_state(p, recs, now=100, policy=Policy())


def test_state_is_read_only_while_a_watchdog_holds_the_lock(isolated_home: Paths) -> None:
    _flapping_state(isolated_home)
    assert watchdog_state.read_state(isolated_home) is None  # written, but nobody holds the lock
    with file_lock(isolated_home.watchdog_lock_file, timeout=0):
        state = watchdog_state.read_state(isolated_home)
    assert state is not None
    fast = state["services"]["fast"]
    assert fast["state"] == "flapping" and fast["restarts_in_window"] == 2
    assert fast["last_log_lines"][-1] == "ValueError: bad model"
    assert "last_log_lines" not in state["services"]["gateway"]


def test_overlay_shows_flapping_with_reason_and_log(isolated_home: Paths) -> None:
    _flapping_state(isolated_home)
    rows = [Row("fast", "crashed", "ValueError: bad model"), Row("standard", "crashed"),
            Row("gateway", "healthy")]
    assert watchdog_state.overlay(isolated_home, rows) == rows  # no watchdog running
    with file_lock(isolated_home.watchdog_lock_file, timeout=0):
        out = watchdog_state.overlay(isolated_home, rows)
    assert out[0].state == "flapping"
    assert out[0].detail.startswith("5 restarts in 600 s, last: exited; last log: ")
    assert out[0].detail.endswith("ValueError: bad model")
    assert out[1].state == "crashed" and "watchdog restarts it in" in out[1].detail
    assert out[2] == rows[2]


def test_a_start_is_retried_when_up_or_down_holds_the_stack_lock(isolated_home: Paths) -> None:
    p = isolated_home
    pidfile.write(p.run_dir, pidfile.PidRecord("fast", 999_999, 1.0, ("x",), 8100))
    before = {"fast": Record(State.BACKOFF, since=0, next_start=1)}
    decision = Decision({"fast": Record(State.STARTING, since=1)}, [Action(ActionKind.START, "fast", "r")], 2)
    watchdog.STACK_LOCK_TIMEOUT_S, saved = 0.1, watchdog.STACK_LOCK_TIMEOUT_S
    try:
        with file_lock(p.lock_file, timeout=0):
            loop = watchdog.LoopState(records=dict(before))
            records = watchdog.apply(p, None, decision, loop)  # type: ignore[arg-type]
    finally:
        watchdog.STACK_LOCK_TIMEOUT_S = saved
    assert records["fast"] == before["fast"]


def test_no_start_after_down_removed_the_pid_file(isolated_home: Paths) -> None:
    decision = Decision({"fast": Record(State.STARTING, since=1)}, [Action(ActionKind.START, "fast", "r")], 2)
    loop = watchdog.LoopState()
    records = watchdog.apply(isolated_home, None, decision, loop)  # type: ignore[arg-type]
    assert records["fast"].state is State.STARTING and loop.start_errors == {}  # nothing started or failed


def test_the_loop_survives_a_corrupt_stack_file_and_stops_on_request(isolated_home: Paths) -> None:
    p = isolated_home
    p.home.mkdir(parents=True)
    p.stack_file.write_text("tiers: [unclosed\n")
    stop = threading.Event()
    opts = watchdog.Options(Policy(interval_s=0.05, fast_poll_s=0.05))
    t = threading.Thread(target=watchdog.run_loop, args=(p, opts, stop))
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    stop.set()
    t.join(5)
    assert not t.is_alive()
