"""`status --watch` and `open` without a running stack, and the terminal rendering of a view.

The live path (a real demo stack, real Ctrl-C, a real browser) is in
tests/integration/test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import webbrowser

import pytest

from mlx_stack.cli.dashboard_view import render_view, spark
from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import dashboard, stack_store
from mlx_stack.system import ports, secrets


def _stack(home: Paths) -> Stack:
    stack = Stack((Tier("standard", "org/big", "/models/big", ports.free_port()),
                   Tier("fast", "org/small", "/models/small", ports.free_port())),
                  ("standard", "fast"), Gateway("127.0.0.1", ports.free_port()))
    stack_store.save(home, stack)
    return stack


def test_watch_and_open_without_a_stack_say_so(run) -> None:
    for args in (("status", "--watch"), ("open",)):
        r = run(*args)
        assert r.exit_code == 4, r.stderr
        assert "no stack configured yet" in r.stderr and "mlx-stack setup" in r.stderr
        assert "Traceback" not in r.stderr


def test_watch_and_json_do_not_combine(run, isolated_home: Paths) -> None:
    _stack(isolated_home)
    r = run("status", "--watch", "--json")
    assert r.exit_code == 2 and "do not combine" in r.stderr


def test_open_prints_the_url_and_never_the_key(run, isolated_home: Paths,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    stack = _stack(isolated_home)
    key = secrets.ensure_gateway_key(isolated_home)
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    r = run("open")
    assert r.exit_code == 0, r.stderr
    url = f"http://127.0.0.1:{stack.gateway.port}/"
    assert r.stdout.strip() == url and opened == [url]
    assert "does not answer" in r.stderr  # nothing runs: it says so, and still prints the URL
    assert key not in r.stdout + r.stderr
    opened.clear()
    r = run("open", "--print")
    assert r.exit_code == 0 and r.stdout.strip() == url and opened == []


def test_the_context_file_is_written_apart_from_the_routes(isolated_home: Paths) -> None:
    from mlx_stack.services.dashboard import write_context
    from mlx_stack.services.gateway_config import write_gateway_config

    stack = _stack(isolated_home)
    write_gateway_config(isolated_home, stack, cloud_port=None)
    assert not isolated_home.dashboard_context_file.exists()  # config only: no hardware detection
    write_context(isolated_home, stack)
    ctx = json.loads(isolated_home.dashboard_context_file.read_text())
    assert ctx["home"] == str(isolated_home.home)
    assert ctx["hardware"]["label"]
    assert "key" not in json.dumps(ctx).lower()


VIEW = {
    "now": 1000.0, "hardware": {"label": "Test machine", "memory_gb": 24.0},
    "budget": {"bytes": 8 << 30, "planned_bytes": 3 << 30},
    "tiers": [
        {"name": "standard", "state": "healthy", "model": "org/big", "rss_bytes": 1 << 30,
         "planned_bytes": 2 << 30, "requests_per_s": 1.5, "ttft_p50_s": 0.12, "tokens_per_s": 42.0,
         "fallbacks_in": 1, "fallbacks_out": 0, "errors": 0, "started_at": 880.0, "detail": ""},
        {"name": "fast", "state": "sleeping", "model": "[bold]org/small[/bold]", "rss_bytes": None,
         "planned_bytes": None, "requests_per_s": 0, "ttft_p50_s": None, "tokens_per_s": 0,
         "fallbacks_in": 0, "fallbacks_out": 1, "errors": 2, "started_at": None, "detail": "idle 10 min"},
    ],
    "history": {"t": [995.0], "tiers": {"standard": {"tokens_per_s": [42.0], "ttft_p50_s": [0.12]}}},
    "events": [{"kind": "fallback", "at": 990.0, "tier": "fast", "to": "standard",
                "reason": "fast: connection refused"}],
}


def test_the_terminal_view_shows_every_number_and_any_state(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    console = Console(width=220, record=True, color_system=None)
    console.print(render_view(VIEW, "http://127.0.0.1:1/"))
    text = console.export_text()
    for expected in ("standard", "healthy", "1.0 / 2.0 GB", "1.50", "120 ms", "42.0", "1 / 0", "2m ago",
                     "sleeping", "[bold]org/small[/bold]", "0 / 1", "Test machine",
                     "3.0 GB planned of 8.0 GB", "fallback: fast -> standard", "connection refused",
                     "fast: idle 10 min"):
        assert expected in text, expected
    console = Console(width=220, record=True, color_system=None)
    console.print(render_view(None, "http://127.0.0.1:1/"))
    assert "does not answer" in console.export_text()


def test_spark() -> None:
    assert spark([]) == ""
    assert spark([0.0, None, 0.0]) == "▁ ▁"
    line = spark([1.0, 2.0, 4.0, 8.0])
    assert line[-1] == "█" and line[0] == "▁" and len(line) == 4


def test_the_context_holds_each_tiers_plan(isolated_home: Paths) -> None:
    stack = _stack(isolated_home)
    ctx = dashboard.context(isolated_home, stack)
    assert set(ctx["planned_bytes"]) == {"standard", "fast"}
    assert all(v > 0 for v in ctx["planned_bytes"].values())


def test_the_terminal_view_prints_no_raw_control_character() -> None:
    """Reasons and details come from tiers and clients: `status --watch` shows their controls escaped."""
    import copy
    import io

    from rich.console import Console

    view = copy.deepcopy(VIEW)
    view["tiers"][1]["model"] = "org/x\x1b]0;title\x07"
    view["tiers"][1]["detail"] = "exited\r\x00\x85"
    view["events"][0]["reason"] = "fast: HTTP 500 \x1b[31mboom\x1b[0m\nforged line"
    out = io.StringIO()
    Console(file=out, width=220, color_system=None, force_terminal=False).print(render_view(view, "http://x/"))
    text = out.getvalue()
    assert not any(c in text for c in ("\x1b", "\r", "\x00", "\x85", "\x07")), repr(text)
    for shown in ("org/x\\x1b]0;title\\x07", "exited\\r\\x00\\x85", "\\x1b[31mboom\\x1b[0m\\nforged line"):
        assert shown in text, shown
