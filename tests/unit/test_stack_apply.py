"""stack_apply's order of operations on a running stack, against the recording fake host
(tests/fake_host.py; the real servers run in tests/integration/test_setup_live.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mlx_stack.core.memory_plan import ServingProfile
from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.errors import ServiceError
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_apply, stack_store
from tests.fake_host import FakeHost

PROFILE = ServingProfile(context=4096, need_mb=1000, cache_memory_mb=0, gpu_memory_utilization=0.2,
                         max_num_seqs=4)


def _tier(tmp_path: Path, name: str, port: int, folder: str | None = None) -> Tier:
    path = tmp_path / "models" / (folder or name)
    path.mkdir(parents=True, exist_ok=True)
    return Tier(name, f"m-{name}", str(path), port, serving=PROFILE)


@pytest.fixture
def old(isolated_home: Paths, tmp_path: Path) -> Stack:
    tiers = tuple(_tier(tmp_path, n, 8100 + i) for i, n in enumerate(("standard", "fast", "longctx")))
    stack = Stack(tiers, ("standard", "fast", "longctx"), Gateway("127.0.0.1", 4000))
    stack_store.save(isolated_home, stack)
    isolated_home.generated_dir.mkdir(parents=True, exist_ok=True)
    (isolated_home.generated_dir / "dashboard.json").write_text(json.dumps({"hardware": {}}))
    return stack


@pytest.fixture
def host(isolated_home: Paths, old: Stack, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    """The old stack running (started by `up` on the fake); events recorded from then on."""
    fake = FakeHost()
    fake.routes_file = isolated_home.routes_file
    lifecycle.up(isolated_home, host=fake)
    fake.events.clear()
    real_save = stack_store.save
    monkeypatch.setattr(stack_store, "save", lambda p, s: (fake.events.append("save"), real_save(p, s)))
    return fake


def _changes(host: FakeHost) -> list[str]:
    """What changed on the machine, in order (probes and locks left out)."""
    keep = ("spawn ", "stop ", "save")
    return [e for e in host.events if e.startswith(keep)]


def test_add_and_remove_start_first_reload_then_stop(isolated_home: Paths, old: Stack, host: FakeHost,
                                                     tmp_path: Path) -> None:
    new = replace(old, tiers=(*old.tiers[:2], _tier(tmp_path, "extra", 8103)),
                  fallback_order=("standard", "fast", "extra"))
    pids = {n: host.proc_of(n).pid for n in ("standard", "fast", "gateway")}
    result = stack_apply.apply(isolated_home, new, start=True, host=host)
    assert _changes(host) == ["spawn extra", "save", "stop longctx"]
    assert "complete extra:extra" in host.events  # counted once it answered a real completion
    assert result.live and result.gateway == "reloaded" and result.started == ["extra"]
    assert result.stopped == ["longctx"] and "longctx" not in host.pid_files
    assert {n: host.proc_of(n).pid for n in pids} == pids  # unchanged tiers are never signalled
    assert stack_store.load(isolated_home) == new


def test_gateway_restarted_when_the_reload_does_not_show(isolated_home: Paths, old: Stack,
                                                         host: FakeHost) -> None:
    host.gateway_reloads = False
    new = replace(old, tiers=old.tiers[:2], fallback_order=("standard", "fast"))
    result = stack_apply.apply(isolated_home, new, start=True, host=host, health_timeout=60)
    assert _changes(host) == ["save", "stop gateway", "spawn gateway", "stop longctx"]
    assert result.gateway == "restarted"


def test_a_changed_tier_restarts_alone(isolated_home: Paths, old: Stack, host: FakeHost,
                                       tmp_path: Path) -> None:
    new = replace(old, tiers=(old.tiers[0], _tier(tmp_path, "fast", 8101, folder="other"), old.tiers[2]))
    result = stack_apply.apply(isolated_home, new, start=True, host=host)
    assert _changes(host) == ["stop fast", "spawn fast", "save"]
    assert result.started == ["fast"] and result.gateway == "reloaded"


def test_a_failed_start_undoes_itself_and_keeps_the_stack(isolated_home: Paths, old: Stack, host: FakeHost,
                                                          tmp_path: Path) -> None:
    before = isolated_home.stack_file.read_text()
    host.die_on_start.add("extra")
    new = replace(old, tiers=(_tier(tmp_path, "standard", 8100, folder="new"), *old.tiers[1:],
                              _tier(tmp_path, "extra", 8103), _tier(tmp_path, "more", 8104)),
                  fallback_order=(*old.fallback_order, "extra", "more"))
    with pytest.raises(ServiceError) as err:
        stack_apply.apply(isolated_home, new, start=True, host=host)
    assert err.value.message.startswith("extra exited while starting")
    assert isolated_home.stack_file.read_text() == before and "save" not in host.events
    changes = _changes(host)
    assert changes[:4] == ["stop standard", "spawn extra", "spawn more", "spawn standard"]
    assert "stop more" in changes and changes[-1] == "spawn standard"  # the old definition is back
    assert {n for n in ("standard", "fast", "longctx", "gateway", "extra", "more")
            if host.running(n) is not None} == {"standard", "fast", "longctx", "gateway"}
    assert host.proc_of("standard").argv[2] == old.tiers[0].path


def test_a_stopped_stack_is_only_written(isolated_home: Paths, old: Stack, host: FakeHost) -> None:
    lifecycle.down(isolated_home, host=host)
    host.events.clear()
    new = replace(old, tiers=old.tiers[:1], fallback_order=("standard",))
    result = stack_apply.apply(isolated_home, new, start=True, host=host)
    assert _changes(host) == ["save"] and not result.live
