"""The watchdog state machine, driven by tables of (time, observation) events."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from mlx_stack.core.watchdog import (
    ActionKind,
    Decision,
    Observation,
    Policy,
    Record,
    State,
    decide,
    probe_due,
)

P = Policy(interval_s=10, restart_delay_s=5, backoff_cap_s=300, reset_after_s=600, max_restarts=5,
           flap_window_s=600, flap_cooldown_s=600, start_timeout_s=60, wedge_probes=3,
           busy_cpu_fraction=0.05, busy_limit_s=1800, fast_poll_s=1)

UP = Observation(wanted=True, alive=True, probe_ok=True, probe_s=0.05)
DOWN = Observation(wanted=True, alive=False)
UNWANTED = Observation(wanted=False, alive=False)


def stuck(cpu: float = 0.0) -> Observation:
    """A probe that timed out after 2 s, while the server used ``cpu`` CPU seconds."""
    return Observation(wanted=True, alive=True, probe_ok=False, error="timed out", probe_s=2.0, cpu_s=cpu)


def busy() -> Observation:
    return stuck(cpu=1.2)


def loading() -> Observation:
    return Observation(wanted=True, alive=True, probe_ok=False, error="connection refused", probe_s=0.01)


def run(events: list[tuple[float, Observation]], rec: Record | None = None,
        policy: Policy = P) -> list[tuple[float, State, list[str], Decision]]:
    """Feed events to decide(); return (time, state, action kinds, decision) per step."""
    records = {"fast": rec or Record()}
    out = []
    for now, obs in events:
        d = decide(records, {"fast": obs}, now, policy)
        records = d.records
        kinds = [a.kind.value for a in d.actions if a.kind is not ActionKind.EVENT]
        out.append((now, d.records["fast"].state, kinds, d))
    return out


def states(rows) -> list[tuple[float, str, list[str]]]:
    return [(t, s.value, a) for t, s, a, _ in rows]


def test_wanted_and_not_running_is_started_then_healthy() -> None:
    assert states(run([(0, DOWN), (1, loading()), (5, UP)])) == [
        (0, "starting", ["start"]),
        (1, "starting", []),
        (5, "healthy", []),
    ]


def test_a_running_service_is_adopted_not_started_again() -> None:
    assert states(run([(0, UP), (10, UP)])) == [(0, "healthy", []), (10, "healthy", [])]
    assert states(run([(0, loading())])) == [(0, "starting", [])]


def test_crash_restarts_after_the_backoff_delay() -> None:
    rows = run([(0, UP), (10, DOWN), (12, DOWN), (15, DOWN), (16, UP)])
    assert states(rows) == [
        (0, "healthy", []),
        (10, "backoff", []),  # failure 1: wait restart_delay = 5 s
        (12, "backoff", []),
        (15, "starting", ["start"]),
        (16, "healthy", []),
    ]
    assert rows[1][3].wake_at == 15  # the loop wakes exactly when the start is due


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [P.backoff(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert P.backoff(0) == 0


def test_crash_at_start_every_time_backs_off_then_flaps_without_a_storm() -> None:
    # The command dies at once each time: we see it dead at every poll.
    records = {"fast": Record()}
    now = 0.0
    starts: list[float] = []
    flapped_at = None
    while now < 1000 and flapped_at is None:
        d = decide(records, {"fast": DOWN}, now, P)
        records = d.records
        kinds = [a.kind for a in d.actions]
        if ActionKind.START in kinds:
            starts.append(now)
        if ActionKind.FLAPPING in kinds:
            flapped_at = now
        now = d.wake_at
    # First start (not a restart), then 5 restarts 5, 10, 20, 40, 80 s after each failure.
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
    # Each gap = backoff delay + the 1 s fast poll that saw the crash.
    assert gaps == [6, 11, 21, 41, 81]
    assert flapped_at is not None
    rec = records["fast"]
    assert rec.state is State.FLAPPING and "5 restarts in 600 s" in rec.reason
    # During the cool-down: nothing, whatever we see.
    for t in (flapped_at + 1, flapped_at + 300, flapped_at + 599):
        d = decide(records, {"fast": DOWN}, t, P)
        assert d.actions == [] and d.records["fast"].state is State.FLAPPING
    d = decide(records, {"fast": DOWN}, flapped_at + 600, P)
    assert [a.kind for a in d.actions] == [ActionKind.CLEAR, ActionKind.START]


def test_flapping_clears_when_started_by_hand() -> None:
    rec = Record(State.FLAPPING, since=0, reason="x", failures=6, restarts=(1, 2, 3, 4, 5), next_start=600)
    rows = run([(100, loading()), (105, UP)], rec)
    assert states(rows) == [(100, "starting", ["clear"]), (105, "healthy", [])]
    assert rows[-1][3].records["fast"].failures == 0


def test_sigstopped_server_is_wedged_after_n_stuck_probes() -> None:
    # No CPU used, probes time out: stuck 1, 2, then restart at the 3rd.
    rows = run([(0, UP), (10, stuck()), (11, stuck()), (12, stuck()), (17, DOWN)])
    assert states(rows) == [
        (0, "healthy", []),
        (10, "unhealthy", []),
        (11, "unhealthy", []),
        (12, "backoff", ["stop"]),
        (17, "starting", ["start"]),
    ]
    assert "wedged: 3 probes" in rows[3][3].actions[0].reason


def test_busy_server_with_a_long_generation_is_left_alone() -> None:
    # Probes fail (queued behind a long request) but CPU keeps moving: busy, never restarted.
    events = [(0.0, UP)] + [(10.0 * i, busy()) for i in range(1, 60)] + [(600.0, UP)]
    rows = run(events)
    assert all(s in (State.HEALTHY, State.BUSY) for _, s, _, _ in rows)
    assert not any(a for _, _, a, _ in rows)
    assert rows[-1][1] is State.HEALTHY


def test_token_counter_counts_as_progress_even_without_cpu_data() -> None:
    obs = [Observation(True, True, False, probe_s=2.0, work_delta=w) for w in (10, 20, 30, 40)]
    rows = run([(0, UP)] + [(10.0 * (i + 1), o) for i, o in enumerate(obs)])
    assert [s.value for _, s, _, _ in rows] == ["healthy", "busy", "busy", "busy", "busy"]


def test_busy_forever_hits_the_busy_limit() -> None:
    pol = replace(P, busy_limit_s=100)
    events = [(0.0, UP)] + [(10.0 * i, busy()) for i in range(1, 11)]
    rows = run(events, policy=pol)
    assert rows[-2][1] is State.BUSY
    assert rows[-1][1] is State.BACKOFF and rows[-1][2] == ["stop"]


def test_stuck_then_recovered_resets_the_count() -> None:
    rows = run([(0, UP), (10, stuck()), (11, stuck()), (12, UP), (22, stuck()), (23, stuck())])
    assert [s.value for _, s, _, _ in rows] == ["healthy", "unhealthy", "unhealthy", "healthy",
                                                 "unhealthy", "unhealthy"]


def test_slow_start_fails_after_the_start_timeout() -> None:
    rows = run([(0, DOWN), (30, loading()), (59, loading()), (60, loading())])
    assert states(rows)[-1] == (60, "backoff", ["stop"])
    assert "not healthy 60 s after start" in rows[-1][3].records["fast"].reason


def test_sustained_health_resets_the_backoff() -> None:
    rec = Record(State.HEALTHY, since=0, failures=4, restarts=(0.0,), healthy_since=0, last_ok=0)
    rows = run([(599, UP), (600, UP), (700, DOWN)], rec)
    assert rows[0][3].records["fast"].failures == 4
    assert rows[1][3].records["fast"].failures == 0
    assert rows[2][3].records["fast"].next_start == 705  # back to the first delay


def test_down_by_the_user_is_not_restarted() -> None:
    assert states(run([(0, UP), (10, UNWANTED), (20, UNWANTED)])) == [
        (0, "healthy", []), (10, "stopped", []), (20, "stopped", [])]


@pytest.mark.parametrize("first", [DOWN, UP])
def test_not_probed_round_changes_nothing(first: Observation) -> None:
    rows = run([(0, first), (1, Observation(True, True, None))])
    assert rows[1][1] is rows[0][1]


def test_two_services_are_independent_and_wake_at_the_earliest() -> None:
    d = decide({}, {"a": UP, "b": DOWN}, 0, P)
    assert d.records["a"].state is State.HEALTHY and d.records["b"].state is State.STARTING
    assert d.wake_at == 1  # b is starting: fast poll


def test_cpu_evidence_needs_a_probe_long_enough_to_measure() -> None:
    quick_fail = Observation(True, True, False, error="connection refused", probe_s=0.01, cpu_s=0.01)
    assert [s.value for _, s, _, _ in run([(0, UP), (10, quick_fail)])] == ["healthy", "unhealthy"]


def test_frozen_after_busy_work_is_still_stuck() -> None:
    # Work done before the freeze does not count: only CPU used while the probe waited.
    rows = run([(0, UP), (10, busy()), (20, stuck()), (23, stuck()), (26, stuck())])
    assert [s.value for _, s, _, _ in rows] == ["healthy", "busy", "unhealthy", "unhealthy", "backoff"]


def test_probe_schedule() -> None:
    pol = P  # interval 10, fast poll 1: recheck after a failed probe every 10/3 s
    assert pol.recheck_s == pytest.approx(10 / 3)
    healthy = Record(State.HEALTHY, last_probe_at=100)
    assert not probe_due(healthy, 109.9, pol) and probe_due(healthy, 110, pol)
    unhealthy = Record(State.UNHEALTHY, last_probe_at=100)
    assert not probe_due(unhealthy, 103, pol) and probe_due(unhealthy, 103.4, pol)
    starting = Record(State.STARTING, last_probe_at=100)
    assert probe_due(starting, 101, pol)
    assert probe_due(Record(State.BACKOFF, last_probe_at=100), 100, pol)
    d = decide({"a": healthy}, {"a": Observation(True, True, None)}, 105, pol)
    assert d.wake_at == 107  # not probed before 110, but checked for being alive every 2 s
    d = decide({"a": healthy}, {"a": Observation(True, True, None)}, 109, pol)
    assert d.wake_at == 110
