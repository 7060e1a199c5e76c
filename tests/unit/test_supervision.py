"""`up`, `down`, `status` and the watchdog loop against the recording fake host
(tests/fake_host.py): no process, socket or real clock, so each runs in milliseconds.
The same paths against real servers run in tests/integration (test_stack_live.py,
test_stack_failures.py, test_watchdog*.py)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from mlx_stack.core.memory_plan import ServingProfile
from mlx_stack.core.service_state import ServiceState
from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.core.watchdog import Policy, State
from mlx_stack.errors import ConflictError, ServiceError
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_store, watchdog
from mlx_stack.system.probes import ProbeResult
from tests.fake_host import REFUSED, FakeHost

PROFILE = ServingProfile(context=4096, need_mb=1000, cache_memory_mb=0, gpu_memory_utilization=0.2,
                         max_num_seqs=4)
SLOW = ProbeResult(True, 3.0, None, 200)


def _stack(p: Paths, tmp_path: Path, *names: str) -> Stack:
    tiers = []
    for i, name in enumerate(names):
        folder = tmp_path / "models" / name
        folder.mkdir(parents=True)
        tiers.append(Tier(name, f"org/{name}", str(folder), 8100 + i, serving=PROFILE))
    stack = Stack(tuple(tiers), tuple(names), Gateway("127.0.0.1", 4000))
    stack_store.save(p, stack)
    # What the dashboard shows beside the counts: known, so no hardware detection runs.
    p.generated_dir.mkdir(parents=True, exist_ok=True)
    (p.generated_dir / "dashboard.json").write_text(json.dumps({"hardware": {}}))
    return stack


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


@pytest.fixture(autouse=True)
def linux_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without a GPU working-set limit: the memory guard of `up` weighs the plans
    against what the fake host says is available (``free_memory``), on any test machine."""
    from mlx_stack.core.hardware import cpu_profile
    from mlx_stack.services import hardware

    monkeypatch.setattr(hardware, "detect", lambda plan=None: cpu_profile("test cpu", 64 * 1024**3, 8))


@pytest.fixture
def two_tiers(isolated_home: Paths, tmp_path: Path) -> Stack:
    return _stack(isolated_home, tmp_path, "fast", "standard")


# --- up ---------------------------------------------------------------------------------


def test_up_starts_everything_then_a_completion_through_the_front_door(
        isolated_home: Paths, two_tiers: Stack, host: FakeHost) -> None:
    said: list[str] = []
    result = lifecycle.up(isolated_home, host=host, progress=said.append)
    assert result.started == ["fast", "standard", "gateway"] and not result.already_running
    assert host.spawned() == ["fast", "standard", "gateway"]  # all launched before any wait
    assert set(host.pid_files) == {"fast", "standard", "gateway"}
    # each tier answered its own completion; the front door one through its first tier
    done = [e for e in host.events if e.startswith("complete")]
    assert done == ["complete fast:fast", "complete standard:standard", "complete gateway:fast"]
    assert any(m.startswith("gateway answered a completion") for m in said)
    again = lifecycle.up(isolated_home, host=host)
    assert again.already_running == ["fast", "standard", "gateway"] and host.spawned() == [
        "fast", "standard", "gateway"]


def test_up_waits_for_a_loading_tier(isolated_home: Paths, two_tiers: Stack, host: FakeHost) -> None:
    host.liveness["standard"] = [REFUSED] * 20 + [ProbeResult(True, 0.01)]
    host.completions["standard"] = [ProbeResult(False, 0.1, "HTTP 503")] * 3 + [ProbeResult(True, 0.5)]
    start = host.monotonic()
    lifecycle.up(isolated_home, host=host)
    assert host.monotonic() - start >= 20 * 0.05  # polled on the fake clock, no real sleep


def test_one_tier_fails_to_start_the_error_names_it_and_the_rest_keep_their_pid_files(
        isolated_home: Paths, two_tiers: Stack, host: FakeHost) -> None:
    host.die_on_start.add("standard")
    with pytest.raises(ServiceError) as err:
        lifecycle.up(isolated_home, host=host)
    assert err.value.message.startswith("standard exited while starting")
    assert "mlx-stack down" in (err.value.hint or "")
    assert host.running("fast") is not None  # `down` stops what did start (as today)


def test_a_tier_that_never_answers_times_out(isolated_home: Paths, two_tiers: Stack,
                                             host: FakeHost) -> None:
    host.completions["fast"] = ProbeResult(False, 1.0, "timed out")
    with pytest.raises(ServiceError) as err:
        lifecycle.up(isolated_home, host=host, health_timeout=30)
    assert "fast did not answer a completion within 30 s" in err.value.message


def test_up_interrupted_stops_what_it_started(isolated_home: Paths, two_tiers: Stack,
                                              host: FakeHost) -> None:
    lifecycle.up(isolated_home, tiers=["fast"], host=host)
    host.events.clear()

    def ctrl_c() -> ProbeResult:  # Ctrl-C lands while `up` waits for standard
        raise KeyboardInterrupt

    host.completions["standard"] = ctrl_c
    with pytest.raises(lifecycle.Interrupted) as err:
        lifecycle.up(isolated_home, host=host)
    assert err.value.message == ("up interrupted; stopped standard; "
                                 "still running (started before): fast, gateway")
    assert "signals ignored" in host.events and host.stopped() == ["standard"]
    assert host.running("fast") is not None and "standard" not in host.pid_files


def test_up_refuses_a_port_another_program_holds_before_starting_anything(
        isolated_home: Paths, two_tiers: Stack, host: FakeHost) -> None:
    host.busy_ports.add(8101)
    with pytest.raises(ConflictError) as err:
        lifecycle.up(isolated_home, host=host)
    assert "port 8101 (for standard) is held by squatter (pid 4321)" in err.value.message
    assert host.spawned() == []


def test_up_waits_for_the_stack_lock_and_says_so(isolated_home: Paths, two_tiers: Stack,
                                                 host: FakeHost) -> None:
    host.busy_locks.add(isolated_home.lock_file.name)
    said: list[str] = []
    with pytest.raises(ConflictError):
        lifecycle.up(isolated_home, host=host, progress=said.append)
    assert said == ["another up/down is running: waiting for it to finish"]


def test_up_runs_the_memory_guard_on_the_hosts_memory_before_starting_anything(
        isolated_home: Paths, two_tiers: Stack, host: FakeHost) -> None:
    host.free_memory = 1500 * 1024**2  # each tier plans 1000 MB
    with pytest.raises(ConflictError) as err:
        lifecycle.up(isolated_home, host=host)
    assert err.value.exit_code == 5 and "fast" in err.value.message
    assert host.spawned() == []
    lifecycle.up(isolated_home, tiers=["fast"], host=host)  # one fits
    assert host.spawned() == ["fast", "gateway"]


def test_the_memory_guard_counts_what_a_running_tier_may_still_grow(
        isolated_home: Paths, two_tiers: Stack, host: FakeHost) -> None:
    lifecycle.up(isolated_home, tiers=["fast"], host=host)
    host.free_memory = 1500 * 1024**2
    host.rss[host.proc_of("fast").pid] = 200 * 1024**2  # 800 MB of its plan still to come
    with pytest.raises(ConflictError) as err:
        lifecycle.up(isolated_home, host=host)
    assert "running tiers (fast)" in err.value.message and host.running("standard") is None
    host.rss[host.proc_of("fast").pid] = 900 * 1024**2  # 100 MB more at most: standard fits
    assert lifecycle.up(isolated_home, host=host).started == ["standard"]


# --- down and status ----------------------------------------------------------------------


def test_down_stops_everything_and_removes_the_pid_files(isolated_home: Paths, two_tiers: Stack,
                                                         host: FakeHost) -> None:
    lifecycle.up(isolated_home, host=host)
    result = lifecycle.down(isolated_home, host=host)
    assert result.stopped == ["fast", "standard", "gateway"] and not result.still_serving
    assert host.pid_files == {} and all(not pr.alive for pr in host.procs.values())
    assert lifecycle.down(isolated_home, host=host).stopped == []


def test_down_reports_a_port_that_still_answers(isolated_home: Paths, two_tiers: Stack,
                                                host: FakeHost) -> None:
    lifecycle.up(isolated_home, host=host)
    host.lingering_ports.add(8100)
    result = lifecycle.down(isolated_home, host=host)
    assert result.still_serving == {"fast": 8100} and "fast" not in result.stopped
    assert result.held_by == {"fast": "squatter (pid 4321)"}
    assert result.as_dict()["still_serving"] == [
        {"service": "fast", "port": 8100, "held_by": "squatter (pid 4321)"}]


def test_down_clears_a_crashed_service_without_signalling(isolated_home: Paths, two_tiers: Stack,
                                                          host: FakeHost) -> None:
    lifecycle.up(isolated_home, host=host)
    host.crash("standard")
    result = lifecycle.down(isolated_home, host=host)
    assert result.not_running == ["standard"] and "standard" not in host.stopped()
    assert "standard" not in host.pid_files


def test_status_uses_the_one_health_rule(isolated_home: Paths, two_tiers: Stack, host: FakeHost) -> None:
    lifecycle.up(isolated_home, host=host)
    host.completions["standard"] = SLOW
    host.crash("fast")
    report = {s.name: s for s in lifecycle.status(isolated_home, host=host).services}
    assert report["fast"].state is ServiceState.CRASHED
    assert report["standard"].state is ServiceState.DEGRADED and report["standard"].detail == "slow to answer"
    # the front door's completion goes through its first running tier (fast is gone)
    assert report["gateway"].state is ServiceState.DEGRADED
    host.completions["standard"] = REFUSED
    report = {s.name: s for s in lifecycle.status(isolated_home, host=host).services}
    assert report["standard"].state is ServiceState.DOWN and report["standard"].detail == "connection refused"


def _completions(host: FakeHost) -> list[str]:
    return [e for e in host.events if e.startswith("complete ")]


def test_status_takes_the_front_doors_answer_as_its_tiers_look(isolated_home: Paths, two_tiers: Stack,
                                                                host: FakeHost) -> None:
    lifecycle.up(isolated_home, host=host)
    host.events.clear()
    report = {s.name: s for s in lifecycle.status(isolated_home, host=host).services}
    # three completions, not four: the front door's went to fast (its first running tier)
    assert sorted(_completions(host)) == ["complete gateway:fast", "complete standard:standard"]
    assert report["fast"].state is ServiceState.HEALTHY
    assert report["fast"].latency_ms == report["gateway"].latency_ms


def test_a_front_door_answer_that_failed_is_no_look_at_the_tier(isolated_home: Paths, two_tiers: Stack,
                                                                  host: FakeHost) -> None:
    lifecycle.up(isolated_home, host=host)
    host.completions["fast"] = [REFUSED, ProbeResult(True, 0.02, None, 200)]  # fails once, then answers
    host.events.clear()
    report = {s.name: s for s in lifecycle.status(isolated_home, host=host).services}
    assert "complete fast:fast" in _completions(host)  # asked itself
    assert report["gateway"].state is ServiceState.DOWN and report["fast"].state is ServiceState.HEALTHY
    host.crash("gateway")
    host.events.clear()
    report = {s.name: s for s in lifecycle.status(isolated_home, host=host).services}
    assert report["gateway"].state is ServiceState.CRASHED
    assert sorted(_completions(host)) == ["complete fast:fast", "complete standard:standard"]


def test_status_finds_a_running_service_that_has_neither_pid_file_nor_entry(
        isolated_home: Paths, tmp_path: Path, host: FakeHost) -> None:
    _stack(isolated_home, tmp_path, "fast", "standard", "extra")
    lifecycle.up(isolated_home, host=host)
    stack = stack_store.load(isolated_home)
    stack_store.save(isolated_home, Stack(stack.tiers[:2], ("fast", "standard"), stack.gateway))
    host.remove_pid(isolated_home.run_dir, "extra")  # and its pid file is lost: the scan finds it
    report = {s.name: s for s in lifecycle.status(isolated_home, host=host).services}
    assert list(report) == ["fast", "standard", "gateway", "extra"]
    assert report["extra"].pid == host.running("extra").pid  # type: ignore[union-attr]
    assert report["extra"].state is ServiceState.DOWN
    assert report["extra"].detail == "not in stack.yaml any more"


def test_a_proof_is_only_the_named_tiers_and_waits_no_longer_than_asked() -> None:
    from mlx_stack.services.health import Health, Proof

    def seen(by: str | None, ok: bool = True) -> Health:
        state = ServiceState.HEALTHY if ok else ServiceState.DOWN
        return Health(state, ProbeResult(ok, 0.05, None, 200, by), True)

    for by, taken in (("fast", True), ("standard", False), (None, False)):
        proof = Proof("fast")
        proof.offer(seen(by))
        assert (proof.take() is not None) is taken
    proof = Proof("fast")
    proof.offer(Health(ServiceState.HEALTHY, ProbeResult(True, 0.01, None, 200, "fast"), False))  # liveness
    assert proof.take() is None
    proof = Proof("fast")
    proof.offer(seen("fast"))
    proof.offer(None)  # the front door's closing offer leaves its look in place
    assert proof.take() is not None
    slow = Proof("fast")  # a front door that does not answer: the tier looks itself after wait_s
    threading.Timer(2.0, lambda: slow.offer(seen("fast"))).start()
    start = time.monotonic()
    assert slow.take(wait_s=0.2) is None
    assert time.monotonic() - start < 1.0


# --- the watchdog loop --------------------------------------------------------------------


OPTS = watchdog.Options(Policy(interval_s=10.0, restart_delay_s=5.0), probe_timeout_s=1.0)


def _watch(p: Paths, host: FakeHost, rounds: int, loop: watchdog.LoopState) -> watchdog.LoopState:
    """``rounds`` rounds of the real loop, its sleeps on the fake clock."""
    host.stop_after_waits = host.waits + rounds
    watchdog.run_loop(p, OPTS, threading.Event(), host=host, loop=loop)
    return loop


def test_the_watchdog_restarts_a_crashed_tier_after_the_backoff(
        isolated_home: Paths, two_tiers: Stack, host: FakeHost, capsys: pytest.CaptureFixture[str]) -> None:
    lifecycle.up(isolated_home, host=host)
    loop = _watch(isolated_home, host, 2, watchdog.LoopState())
    assert {n: r.state for n, r in loop.records.items()} == {
        "fast": State.HEALTHY, "standard": State.HEALTHY, "gateway": State.HEALTHY}
    host.crash("fast")
    crashed_at = host.time()
    _watch(isolated_home, host, 1, loop)
    assert loop.records["fast"].state is State.BACKOFF and host.spawned().count("fast") == 1
    _watch(isolated_home, host, 10, loop)
    restarted = host.running("fast")
    assert restarted is not None and host.spawned().count("fast") == 2
    assert restarted.start_time - crashed_at >= 5.0  # not before the first backoff delay
    assert loop.records["fast"].state is State.HEALTHY
    assert host.running("standard") is not None and host.spawned().count("standard") == 1
    err = capsys.readouterr().err
    assert "fast: start (restart after: exited)" in err and "fast: healthy (was starting)" in err


def test_a_busy_stack_lock_is_retried_and_said_once(isolated_home: Paths, two_tiers: Stack,
                                                   host: FakeHost,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    lifecycle.up(isolated_home, host=host)
    opts = watchdog.Options(Policy(interval_s=10.0, restart_delay_s=0.0))
    loop = watchdog.LoopState()
    watchdog.run_round(isolated_home, opts, loop, host=host)  # all healthy
    host.crash("fast")
    host.busy_locks.add(isolated_home.lock_file.name)  # an `up` runs
    for _ in range(6):
        host.clock = max(host.clock, watchdog.run_round(isolated_home, opts, loop, host=host))
    assert loop.waiting_for_lock == {"fast"} and host.spawned().count("fast") == 1
    assert capsys.readouterr().err.count("fast: stack lock busy") == 1
    host.busy_locks.clear()
    for _ in range(3):
        host.clock = max(host.clock, watchdog.run_round(isolated_home, opts, loop, host=host))
    assert host.spawned().count("fast") == 2 and loop.waiting_for_lock == set()


def test_a_tier_that_keeps_crashing_is_declared_flapping(isolated_home: Paths, two_tiers: Stack,
                                                         host: FakeHost,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    lifecycle.up(isolated_home, host=host)
    policy = Policy(interval_s=10.0, restart_delay_s=1.0, max_restarts=3, flap_window_s=600.0)
    opts = watchdog.Options(policy)
    loop = watchdog.LoopState()
    watchdog.run_round(isolated_home, opts, loop, host=host)  # all healthy
    host.die_on_start.add("fast")
    host.crash("fast")
    for _ in range(30):
        host.clock = max(host.clock, watchdog.run_round(isolated_home, opts, loop, host=host))
        if loop.records.get("fast") and loop.records["fast"].state is State.FLAPPING:
            break
    assert loop.records["fast"].state is State.FLAPPING
    assert host.spawned().count("fast") == 1 + 3  # up, then max_restarts restarts
    assert "fast: FLAPPING: 3 restarts in 600 s" in capsys.readouterr().err
    written = json.loads((isolated_home.run_dir / "watchdog.json").read_text())
    assert written["services"]["fast"]["state"] == ServiceState.FLAPPING == "flapping"


def test_an_unchanged_state_is_written_once_per_interval(isolated_home: Paths, two_tiers: Stack,
                                                         host: FakeHost) -> None:
    lifecycle.up(isolated_home, host=host)
    opts = watchdog.Options(Policy(interval_s=10.0))
    loop = watchdog.LoopState()
    watchdog.run_round(isolated_home, opts, loop, host=host)
    first = loop.last_written
    assert first is not None and isolated_home.watchdog_state_file.exists()
    host.clock += 5.0
    watchdog.run_round(isolated_home, opts, loop, host=host)
    assert loop.last_written == first  # nothing changed within the interval: not rewritten
    host.clock += 6.0
    watchdog.run_round(isolated_home, opts, loop, host=host)
    assert loop.last_written is not None and loop.last_written[1] > first[1]
    # another loop (another watchdog) keeps its own memory of what it wrote
    assert watchdog.LoopState().last_written is None


def test_spawn_daemon_waits_for_the_watchdog_lock_on_the_host(isolated_home: Paths, host: FakeHost) -> None:
    host.held_locks.add(isolated_home.watchdog_lock_file.name)
    assert watchdog.spawn_daemon(isolated_home, ["watch"], host=host) == 4242
    assert host.events == ["detach watch"]
    with pytest.raises(ConflictError):
        watchdog.ensure_not_running(isolated_home, host=host)
    host.held_locks.clear()
    watchdog.ensure_not_running(isolated_home, host=host)
    assert watchdog.spawn_daemon(isolated_home, ["watch"], ready_timeout=1.0, host=host) == 4242
    assert host.monotonic() >= 1000.0 + 1.0  # polled on the fake clock until the timeout


def test_serve_installs_signal_handlers_that_stop_the_loop(isolated_home: Paths, two_tiers: Stack,
                                                           host: FakeHost) -> None:
    import signal

    def stop_on_first_wait(event: threading.Event, seconds: float) -> bool:
        host.signal_handlers[signal.SIGTERM](signal.SIGTERM, None)
        return event.is_set()

    host.wait = stop_on_first_wait  # type: ignore[method-assign]
    watchdog.serve(isolated_home, watchdog.Options(Policy()), host=host)
    assert set(host.signal_handlers) == {signal.SIGTERM, signal.SIGINT}
    assert "lock watchdog.lock" in host.events


# --- on-demand tiers ------------------------------------------------------------------------


def test_an_idle_tier_is_put_to_sleep_only_when_the_stack_lock_is_free(
        isolated_home: Paths, two_tiers: Stack, host: FakeHost) -> None:
    from mlx_stack.services import on_demand

    lifecycle.up(isolated_home, host=host)
    fast = host.proc_of("fast")
    assert on_demand.is_running(isolated_home, "fast", host=host)
    assert on_demand.process_alive(isolated_home, "fast", fast.pid, fast.start_time, host=host)
    host.busy_locks.add(isolated_home.lock_file.name)
    assert not on_demand.put_to_sleep(isolated_home, "fast", host=host) and host.running("fast")
    host.busy_locks.clear()
    assert on_demand.put_to_sleep(isolated_home, "fast", host=host)
    assert host.running("fast") is None and "fast" not in host.pid_files
    woken = on_demand.wake(isolated_home, "standard", [], host=host, hw=object())
    assert woken.already_running and woken.pid == host.proc_of("standard").pid


def test_down_names_a_foreign_program_on_a_stack_port_though_nothing_of_ours_ran(
        isolated_home: Paths, two_tiers: Stack, host: FakeHost) -> None:
    host.lingering_ports.add(8100)  # something else listens on fast's port; no pid file, no marker
    result = lifecycle.down(isolated_home, host=host)
    assert result.still_serving == {"fast": 8100} and result.stopped == [] and result.not_running == []
    assert result.held_by == {"fast": "squatter (pid 4321)"}
    host.lingering_ports.clear()
    assert lifecycle.down(isolated_home, host=host).still_serving == {}


def test_a_cluster_tier_missing_a_rank_is_crashed_and_restarted_whole(
        isolated_home: Paths, tmp_path: Path, host: FakeHost, capsys: pytest.CaptureFixture[str]) -> None:
    """mlx.launch waits on when a rank exits cleanly: the launcher lives, a rank is gone.
    `status` says crashed; the watchdog stops the whole group and starts it again."""
    from dataclasses import replace

    from mlx_stack.core.cluster import Cluster, ClusterHost

    stack = _stack(isolated_home, tmp_path, "big")
    local = ClusterHost("127.0.0.1", ("127.0.0.1",))
    tier = replace(stack.tiers[0], cluster=Cluster((local, local)))
    stack_store.save(isolated_home, replace(stack, tiers=(tier,)))
    lifecycle.up(isolated_home, host=host)
    launcher = host.proc_of("big")
    host.children[launcher.pid] = 2
    loop = _watch(isolated_home, host, 2, watchdog.LoopState())
    assert loop.records["big"].state is State.HEALTHY
    big = next(s for s in lifecycle.status(isolated_home, host=host).services if s.name == "big")
    assert big.state is ServiceState.HEALTHY and big.detail == "2 ranks (ring, tensor)"
    host.children[launcher.pid] = 1
    big = next(s for s in lifecycle.status(isolated_home, host=host).services if s.name == "big")
    assert big.state is ServiceState.CRASHED and big.detail == "rank gone: 1 of 2 ranks running"
    _watch(isolated_home, host, 1, loop)
    assert not launcher.alive and "big" in host.stopped()  # the whole group, at once
    assert loop.records["big"].state is State.BACKOFF
    _watch(isolated_home, host, 10, loop)
    assert host.spawned().count("big") == 2 and loop.records["big"].state is State.HEALTHY
    assert "a rank is gone; stopping the whole cluster tier" in capsys.readouterr().err
