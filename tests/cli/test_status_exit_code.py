"""`status` exit codes from the states it reports (LSB convention, README's table)."""

from __future__ import annotations

import pytest

from mlx_stack.core.service_state import ServiceStatus
from mlx_stack.services.lifecycle import StatusReport


def _report(*states: str, configured: bool = True) -> StatusReport:
    services = [ServiceStatus(f"t{i}", "tier", s, 8100 + i) for i, s in enumerate(states)]
    return StatusReport(configured, services)


@pytest.mark.parametrize(
    ("states", "code"),
    [
        (("healthy", "degraded"), 0),
        (("healthy", "sleeping"), 0),  # an on-demand tier stopped on purpose is fine
        (("healthy", "stopped"), 3),
        (("sleeping", "crashed"), 3),
        (("down",), 3),
        (("flapping",), 3),
    ],
)
def test_status_exit_code_follows_the_states(states: tuple[str, ...], code: int) -> None:
    assert _report(*states).exit_code == code


def test_status_exit_code_without_a_stack_is_4() -> None:
    assert _report(configured=False).exit_code == 4
