"""The memory guard at `up`: a hand-edited stack.yaml over its budget, tiers that do not fit
the memory (a fake reading of it), and --force. No server starts: `launch` is replaced by a
recorder that fails like a broken binary, so getting past the guard shows as exit 7."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mlx_stack.core.memory_plan import MB, ServingProfile
from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.errors import ServiceError
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, serving_plan, stack_store
from mlx_stack.system import ports

PROFILE = ServingProfile(context=8192, need_mb=2048, cache_memory_mb=256, gpu_memory_utilization=0.2,
                         max_num_seqs=4)


def _stack(home: Paths, tmp_path: Path, *, cache_mb: int = 256, budget_mb: int = 6000) -> Stack:
    tiers = []
    for name in ("standard", "fast"):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        tiers.append(Tier(name, f"org/{name}", str(folder), ports.free_port(),
                          serving=replace(PROFILE, cache_memory_mb=cache_mb)))
    stack = Stack(tuple(tiers), ("standard", "fast"), Gateway("127.0.0.1", ports.free_port()),
                  memory_budget_mb=budget_mb)
    stack_store.save(home, stack)
    return stack


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def launch(p: Paths, stack: Stack, service: str, **_: object) -> None:
        calls.append(service)
        raise ServiceError(f"cannot start {service}: (test) no binary")

    monkeypatch.setattr(lifecycle, "launch", launch)
    return calls


def _memory(monkeypatch: pytest.MonkeyPatch, available_mb: int) -> None:
    fake = serving_plan.MemoryReading(available_mb * MB, "available memory", lambda pid: None)
    monkeypatch.setattr(serving_plan, "reading", lambda hw, host=None: fake)


def test_hand_edited_caps_over_the_budget_exit_5_with_the_numbers(
        run, isolated_home: Paths, tmp_path: Path, launched: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _memory(monkeypatch, 64_000)
    _stack(isolated_home, tmp_path, cache_mb=3000, budget_mb=6000)  # 2 x (2 GB + 2.9 GB) > 5.9 GB
    before = isolated_home.stack_file.read_bytes()
    result = run("up")
    assert result.exit_code == 5
    assert "plan 9.9 GB, over the memory budget of 5.9 GB by 4.0 GB" in result.stderr
    assert "standard 2.0 GB + cache 2.9 GB" in result.stderr and "--force" in result.stderr
    assert launched == [] and isolated_home.stack_file.read_bytes() == before  # nothing started or changed
    result = run("up", "--force")
    assert result.exit_code == 7 and launched  # past the guard: the (fake) launch ran


def test_tiers_that_do_not_fit_the_memory_exit_5_naming_what_would_fit(
        run, isolated_home: Paths, tmp_path: Path, launched: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _stack(isolated_home, tmp_path)
    _memory(monkeypatch, 3000)  # one tier (2.3 GB) fits, two do not
    result = run("up")
    assert result.exit_code == 5
    assert "needs 4.5 GB" in result.stderr and "the available memory is 2.9 GB" in result.stderr
    assert "would fit" in result.stderr and launched == []
    result = run("up", "--tier", "standard")
    assert result.exit_code == 7 and "standard" in launched  # that one alone fits
    launched.clear()
    result = run("up", "--force")
    assert result.exit_code == 7 and launched


def test_running_tiers_count_what_they_may_still_grow(
        isolated_home: Paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = _stack(isolated_home, tmp_path)
    from mlx_stack.services import running

    monkeypatch.setattr(running, "running_record",
                        lambda p, name, **_: type("R", (), {"pid": 42})() if name == "fast" else None)
    # fast runs with 1 GB resident of its 2.3 GB plan: 1.3 GB more may come
    fake = serving_plan.MemoryReading(3000 * MB, "available memory", lambda pid: 1024 * MB)
    with pytest.raises(Exception) as err:
        serving_plan.check_start(isolated_home, stack, ["standard"], read=lambda hw: fake)
    assert getattr(err.value, "exit_code", None) == 5 and "running tiers (fast)" in str(err.value)
    roomy = serving_plan.MemoryReading(4000 * MB, "available memory", lambda pid: 1024 * MB)
    serving_plan.check_start(isolated_home, stack, ["standard"], read=lambda hw: roomy)
    serving_plan.check_start(isolated_home, stack, ["standard"], read=lambda hw: fake, force=True)


def test_mac_sums_the_plans_against_the_working_set_limit(
        isolated_home: Paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = _stack(isolated_home, tmp_path)
    from mlx_stack.services import running

    monkeypatch.setattr(running, "running_record",
                        lambda p, name, **_: type("R", (), {"pid": 42})() if name == "fast" else None)
    limit = serving_plan.MemoryReading(4000 * MB, "GPU working-set limit", lambda pid: 10 * MB)
    with pytest.raises(Exception) as err:  # 2.3 GB running (plan, not RSS) + 2.3 GB > 3.9 GB
        serving_plan.check_start(isolated_home, stack, ["standard"], read=lambda hw: limit)
    assert "GPU working-set limit is 3.9 GB" in str(err.value)


def test_old_stack_without_profiles_is_planned_on_the_fly(run, isolated_home: Paths, tmp_path: Path) -> None:
    stack = _stack(isolated_home, tmp_path)
    old = replace(stack, tiers=tuple(replace(t, serving=None) for t in stack.tiers), memory_budget_mb=None)
    stack_store.save(isolated_home, old)
    assert "serving" not in isolated_home.stack_file.read_text()
    result = run("up", "--dry-run")
    assert result.exit_code == 0
    assert "--max-cache-blocks" in result.stdout and "--gpu-memory-utilization" in result.stdout
    assert "serving" not in isolated_home.stack_file.read_text()  # a dry run writes nothing


def test_a_watchdog_restart_is_guarded_too(isolated_home: Paths, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The watchdog restarts a tier with service_control.start_service: the same guard."""
    from mlx_stack.errors import ConflictError
    from mlx_stack.services import service_control

    _stack(isolated_home, tmp_path)
    _memory(monkeypatch, 1000)
    calls: list[str] = []
    monkeypatch.setattr(service_control, "launch", lambda p, s, name, **_: calls.append(name))
    with pytest.raises(ConflictError) as err:
        service_control.start_service(isolated_home, "standard", wait=False)
    assert "available memory is 1000 MB" in err.value.message and calls == []
    service_control.start_service(isolated_home, "standard", wait=False, force=True)
    assert calls == ["standard"]


def test_on_demand_tiers_count_for_the_budget_only_while_they_run(
        run, isolated_home: Paths, tmp_path: Path, launched: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from mlx_stack.core.stack import ON_DEMAND
    from mlx_stack.errors import ConflictError
    from mlx_stack.system import pidfile

    _memory(monkeypatch, 64_000)
    stack = _stack(isolated_home, tmp_path, budget_mb=4700)  # two plans (2 x 2.3 GB) fit, three do not
    fast = stack.tier("fast")
    stack = stack.with_tier(replace(fast, mode=ON_DEMAND))
    stack = stack.with_tier(replace(fast, name="coder", port=ports.free_port(), mode=ON_DEMAND))
    stack_store.save(isolated_home, stack)
    result = run("up")  # the on-demand tiers sleep: the guard lets standard alone through
    assert result.exit_code == 7 and launched == ["standard"], result.stderr
    hw = type("HW", (), {"kind": "linux", "gpu_limit_bytes": None, "memory_bytes": 64_000 * MB})()
    serving_plan.check_start(isolated_home, stack, ["coder"], hw=hw)  # standard + coder: fits
    me = pidfile.record_for("fast", os.getpid(), ["x"])  # fast "runs" (this test process stands in)
    pidfile.write(isolated_home.run_dir, me)
    with pytest.raises(ConflictError, match="over the memory budget"):
        serving_plan.check_start(isolated_home, stack, ["coder"], hw=hw)
    serving_plan.check_start(isolated_home, stack, ["coder"], hw=hw, assume_stopped=["fast"])


def _cluster_stack(home: Paths, tmp_path: Path, remote_gb: float) -> Stack:
    from mlx_stack.core.cluster import Cluster, ClusterHost

    folder = tmp_path / "big"
    folder.mkdir(exist_ok=True)
    hosts = (ClusterHost("127.0.0.1", ("10.0.0.1",)), ClusterHost("mac2", ("10.0.0.2",), memory_gb=remote_gb))
    profile = ServingProfile(context=8192, need_mb=5000, cache_memory_mb=1000, gpu_memory_utilization=0.9,
                             max_num_seqs=1, weights_mb=4000, kv_mb=500)
    tier = Tier("big", "org/big", str(folder), ports.free_port(), serving=profile, cluster=Cluster(hosts))
    stack = Stack((tier,), ("big",), Gateway("127.0.0.1", ports.free_port()), memory_budget_mb=6000)
    stack_store.save(home, stack)
    return stack


def test_a_cluster_tier_is_guarded_per_host(run, isolated_home: Paths, tmp_path: Path, launched: list[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # each rank: (4000 + 500 + 1000) / 2 = 2750 MB split + 500 MB it holds in full = 3250 MB
    _memory(monkeypatch, 64_000)
    _cluster_stack(isolated_home, tmp_path, remote_gb=2)
    result = run("up")
    assert result.exit_code == 5 and launched == []
    assert "cluster tier big: rank 1 (mac2) plans 3250 MB but reports 2048 MB" in result.stderr
    _cluster_stack(isolated_home, tmp_path, remote_gb=4)
    _memory(monkeypatch, 3000)  # this Mac holds only rank 0's share: 3250 MB > 2.9 GB
    result = run("up")
    assert result.exit_code == 5 and "big 3.2 GB" in result.stderr, result.stderr
    _memory(monkeypatch, 4000)  # the whole plan (6 GB) would not fit here; rank 0's share does
    result = run("up")
    assert result.exit_code == 7 and launched == ["big"]  # past the guard


def test_dry_run_prints_the_launch_line(run, isolated_home: Paths, tmp_path: Path) -> None:
    stack = _cluster_stack(isolated_home, tmp_path, remote_gb=64)
    result = run("up", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "mlx.launch --backend ring --hostfile" in result.stdout
    assert "cluster-big.json --starting-port 32323" in result.stdout
    assert f"-- -m mlx_lm server --model {stack.tiers[0].path} --host 127.0.0.1" in result.stdout
    assert not isolated_home.cluster_hostfile("big").exists()  # a dry run writes nothing
