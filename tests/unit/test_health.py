"""The one health rule (services/health.py) against the fake host."""

from __future__ import annotations

from pathlib import Path

from mlx_stack.core.service_state import ServiceState
from mlx_stack.services import health
from mlx_stack.system.probes import ProbeResult
from tests.fake_host import REFUSED, FakeHost

TIER = health.Target("fast", "http://127.0.0.1:8100", "/health", "fast")


def _serving(host: FakeHost) -> None:
    host.spawn(["vllm-mlx", "--port", "8100"], log_file=Path("/dev/null"), owner=(Path("/h"), "fast"))


def test_one_look_a_completion_rated_by_its_latency() -> None:
    host = FakeHost()
    assert health.check(TIER, 5.0, host).state is ServiceState.DOWN  # nothing listens
    _serving(host)
    seen = health.check(TIER, 5.0, host)
    assert seen.state is ServiceState.HEALTHY and seen.completion
    host.completions["fast"] = ProbeResult(True, health.DEGRADED_AFTER_S + 0.5)
    assert health.check(TIER, 5.0, host).state is ServiceState.DEGRADED
    host.completions["fast"] = ProbeResult(False, 5.0, "timed out")
    down = health.check(TIER, 5.0, host)
    assert down.state is ServiceState.DOWN and down.result.error == "timed out"


def test_without_a_model_liveness_is_all_and_never_degraded() -> None:
    host = FakeHost()
    _serving(host)
    host.liveness["fast"] = ProbeResult(True, 9.0)
    seen = health.check(health.Target("fast", TIER.url, "/health", None), 5.0, host)
    assert seen.state is ServiceState.HEALTHY and not seen.completion
    assert not any(e.startswith("complete") for e in host.events)  # LiteLLM never gets one


def test_wait_polls_liveness_then_completions_until_one_answers() -> None:
    host = FakeHost()
    _serving(host)
    host.liveness["fast"] = [REFUSED] * 3 + [ProbeResult(True, 0.01)]
    host.completions["fast"] = [ProbeResult(False, 0.1, "HTTP 503"), ProbeResult(True, 0.2)]
    outcome, seconds = health.wait(TIER, alive=lambda: True, cancelled=lambda: False,
                                   deadline=host.monotonic() + 60, host=host)
    assert outcome is health.Waited.READY
    assert seconds >= 3 * health.READY_POLL_S + health.RETRY_COMPLETION_S
    assert [e for e in host.events if e.startswith("complete")] == ["complete fast:fast"] * 2


def test_wait_gives_up_on_exit_cancel_and_deadline() -> None:
    host = FakeHost()
    def outcome_of(alive: bool, cancelled: bool) -> health.Waited:
        return health.wait(TIER, alive=lambda: alive, cancelled=lambda: cancelled,
                           deadline=host.monotonic() + 10, host=host)[0]

    assert outcome_of(alive=False, cancelled=False) is health.Waited.EXITED
    assert outcome_of(alive=True, cancelled=True) is health.Waited.CANCELLED
    assert outcome_of(alive=True, cancelled=False) is health.Waited.TIMED_OUT  # nothing listens
    _serving(host)
    outcome, _ = health.wait(TIER, alive=lambda: True, cancelled=lambda: False, real_completion=False,
                             deadline=host.monotonic() + 10, host=host)
    assert outcome is health.Waited.READY and not any(e.startswith("complete") for e in host.events)
