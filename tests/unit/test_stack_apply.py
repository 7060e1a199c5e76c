"""stack_apply's order of operations on a running stack, against recording fakes of the
per-service primitives (the real ones run in tests/integration/test_setup_live.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.errors import ServiceError
from mlx_stack.paths import Paths
from mlx_stack.services import stack_apply, stack_store


def _stack(*names: str, gateway: int = 4000) -> Stack:
    tiers = tuple(Tier(name=n, model=f"m-{n}", path=f"/m/{n}", port=8100 + i) for i, n in enumerate(names))
    return Stack(tiers=tiers, fallback_order=names, gateway=Gateway(port=gateway))


class Recorder:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, running: set[str], *, reload_ok: bool = True,
                 failing: set[str] | None = None) -> None:
        self.calls: list[str] = []
        self.running = set(running)
        failing = failing or set()

        def start(p: Paths, name: str, *, stack: Stack, timeout: float = 0, force: bool = False) -> None:
            self.calls.append(f"start {name}")
            if name in failing:
                raise ServiceError(f"{name} did not answer")
            self.running.add(name)

        def stop(p: Paths, name: str, grace: float = 0) -> bool:
            self.calls.append(f"stop {name}")
            self.running.discard(name)
            return True

        monkeypatch.setattr(stack_apply, "start_service", start)
        # The memory guard is tested on its own (test_memory_guard.py); here it lets all start.
        from mlx_stack.services import serving_plan

        monkeypatch.setattr(serving_plan, "check_start", lambda *a, **k: None)
        monkeypatch.setattr(stack_apply, "stop_service", stop)
        def running_record(p: Paths, name: str) -> str | None:
            return name if name in self.running else None

        def write_config(p: Paths, s: Stack, *, cloud_port: int | None) -> None:
            self.calls.append("write config")

        def reloaded(p: Paths, s: Stack, d: object) -> bool:
            self.calls.append("reload?")
            return reload_ok

        monkeypatch.setattr(stack_apply, "running_record", running_record)
        monkeypatch.setattr(stack_apply, "write_gateway_config", write_config)
        monkeypatch.setattr(stack_apply, "_reloaded", reloaded)
        real_save = stack_store.save
        monkeypatch.setattr(stack_store, "save", lambda p, s: (self.calls.append("save"), real_save(p, s)))


OLD = _stack("standard", "fast", "longctx")
RUNNING = {"standard", "fast", "longctx", "gateway"}


def test_add_and_remove_start_first_reload_then_stop(monkeypatch: pytest.MonkeyPatch,
                                                     isolated_home: Paths) -> None:
    stack_store.save(isolated_home, OLD)
    rec = Recorder(monkeypatch, RUNNING)
    new = replace(OLD, tiers=(*OLD.tiers[:2], Tier("extra", "m-x", "/m/x", 8103)),
                  fallback_order=("standard", "fast", "extra"))
    result = stack_apply.apply(isolated_home, new, start=True)
    assert rec.calls == ["start extra", "save", "write config", "reload?", "stop longctx"]
    assert result.live and result.gateway == "reloaded" and result.started == ["extra"]
    assert stack_store.load(isolated_home) == new


def test_gateway_restarted_when_the_reload_does_not_show(monkeypatch: pytest.MonkeyPatch,
                                                         isolated_home: Paths) -> None:
    stack_store.save(isolated_home, OLD)
    rec = Recorder(monkeypatch, RUNNING, reload_ok=False)
    new = replace(OLD, tiers=OLD.tiers[:2], fallback_order=("standard", "fast"))
    result = stack_apply.apply(isolated_home, new, start=True)
    assert rec.calls == ["save", "write config", "reload?", "stop gateway", "start gateway", "stop longctx"]
    assert result.gateway == "restarted"


def test_a_changed_tier_restarts_alone(monkeypatch: pytest.MonkeyPatch, isolated_home: Paths) -> None:
    stack_store.save(isolated_home, OLD)
    rec = Recorder(monkeypatch, RUNNING)
    new = replace(OLD, tiers=(OLD.tiers[0], replace(OLD.tiers[1], path="/m/other"), OLD.tiers[2]))
    stack_apply.apply(isolated_home, new, start=True)
    assert rec.calls == ["stop fast", "start fast", "save", "write config", "reload?"]


def test_a_failed_start_undoes_itself_and_keeps_the_stack(monkeypatch: pytest.MonkeyPatch,
                                                          isolated_home: Paths) -> None:
    stack_store.save(isolated_home, OLD)
    before = isolated_home.stack_file.read_text()
    rec = Recorder(monkeypatch, RUNNING, failing={"extra"})
    new = replace(OLD, tiers=(replace(OLD.tiers[0], path="/m/new"), *OLD.tiers[1:],
                              Tier("extra", "m-x", "/m/x", 8103), Tier("more", "m-y", "/m/y", 8104)),
                  fallback_order=(*OLD.fallback_order, "extra", "more"))
    with pytest.raises(ServiceError):
        stack_apply.apply(isolated_home, new, start=True)
    assert isolated_home.stack_file.read_text() == before
    assert "save" not in rec.calls
    assert "stop more" in rec.calls and "stop standard" in rec.calls  # what started is stopped again
    assert rec.calls[-1] == "start standard"  # the changed tier gets its old definition back
    assert rec.running == RUNNING


def test_a_stopped_stack_is_only_written(monkeypatch: pytest.MonkeyPatch, isolated_home: Paths) -> None:
    stack_store.save(isolated_home, OLD)
    rec = Recorder(monkeypatch, set())
    new = replace(OLD, tiers=OLD.tiers[:1], fallback_order=("standard",))
    result = stack_apply.apply(isolated_home, new, start=True)
    assert rec.calls == ["save"] and not result.live
