"""One ServiceState vocabulary: every state has a style in `status` and on the dashboard,
and every watchdog state maps onto one."""

from __future__ import annotations

import json

from mlx_stack.cli.services_view import STYLE
from mlx_stack.core import dashboard
from mlx_stack.core.service_state import DOWN, UP, WARN, ServiceState, ServiceStatus, from_watchdog, parse
from mlx_stack.core.watchdog import State


def test_every_state_has_a_status_style_and_a_dashboard_class() -> None:
    for state in ServiceState:
        assert state in STYLE, f"{state} has no style in the status table"
        assert dashboard.state_class(state) in ("up", "warn", "down"), f"{state} has no dashboard class"
        assert sum(state in group for group in (UP, WARN, DOWN)) == 1
    assert STYLE[ServiceState.FLAPPING]  # the one state the status table once lacked


def test_every_watchdog_state_maps_onto_a_service_state_of_the_same_word() -> None:
    for state in State:
        assert from_watchdog(state) == state.value
        assert parse(state.value) is from_watchdog(state)
    assert parse("no-such-state") is None and parse(None) is None


def test_json_output_keeps_the_plain_strings() -> None:
    row = ServiceStatus("fast", "tier", ServiceState.SLEEPING, 8100)
    text = json.dumps(row.as_dict())
    assert '"state": "sleeping"' in text
    assert json.loads(text)["state"] == "sleeping"
