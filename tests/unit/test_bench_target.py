"""What `bench TARGET` resolves to, and which key a measurement is saved under."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.errors import NotFoundError, UsageError
from mlx_stack.paths import Paths
from mlx_stack.services import bench_target, pulled_models, stack_store
from mlx_stack.system import ports

REPO = "mlx-community/Qwen3-0.6B-4bit"


@pytest.fixture(autouse=True)
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hf"


def _model(folder: Path, bits: int | None = 4) -> Path:
    folder.mkdir(parents=True)
    config: dict[str, object] = {"model_type": "qwen2"}
    if bits:
        config["quantization"] = {"bits": bits, "group_size": 64}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def _cached(hf_home: Path, repo: str) -> Path:
    root = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = _model(root / "snapshots" / "abc")
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("abc")
    return snapshot


def test_a_cache_snapshot_of_a_catalog_repo_is_that_catalog_model(isolated_home: Paths, hf_home: Path):
    assert bench_target.identify(isolated_home, _cached(hf_home, REPO)) == ("qwen3-0.6b", "int4")
    assert bench_target.identify(isolated_home, _cached(hf_home, "org/other")) == ("org/other", "int4")


def test_a_pulled_folder_is_known_by_its_record(isolated_home: Paths, tmp_path: Path):
    folder = _model(tmp_path / "model-dir" / "mlx-community--Qwen3-0.6B-8bit", bits=8)
    pulled_models.record(isolated_home, pulled_models.PulledModel(
        "qwen3-0.6b", "mlx-community/Qwen3-0.6B-8bit", "sha", str(folder), "int8", 1))
    assert bench_target.identify(isolated_home, folder) == ("qwen3-0.6b", "int8")


def test_any_other_folder_is_local(isolated_home: Paths, tmp_path: Path):
    assert bench_target.identify(isolated_home, _model(tmp_path / "mine", bits=None)) == ("local:mine", None)


def test_a_catalog_id_in_the_cache_is_served_with_its_parsers(isolated_home: Paths, hf_home: Path):
    snapshot = _cached(hf_home, REPO)
    target = bench_target.resolve(isolated_home, "qwen3-0.6b")
    assert (target.kind, target.model, target.quant) == ("catalog", "qwen3-0.6b", "int4")
    assert target.path == snapshot
    assert (target.tool_call_parser, target.reasoning_parser) == ("hermes", "qwen3")
    by_repo = bench_target.resolve(isolated_home, REPO)
    assert (by_repo.kind, by_repo.model, by_repo.path) == ("catalog", "qwen3-0.6b", snapshot)


def test_a_folder_target(isolated_home: Paths, tmp_path: Path):
    folder = _model(tmp_path / "mine")
    target = bench_target.resolve(isolated_home, str(folder))
    assert (target.kind, target.model, target.path) == ("path", "local:mine", folder)
    with pytest.raises(UsageError, match="not a model folder"):
        bench_target.resolve(isolated_home, str(tmp_path))


def test_a_tier_name_comes_first(isolated_home: Paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stack = Stack((Tier("fast", "qwen3-0.6b", str(_model(tmp_path / "m")), ports.free_port()),), ("fast",),
                  Gateway("127.0.0.1", ports.free_port()))
    stack_store.save(isolated_home, stack)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast").mkdir()  # a folder of the same name does not shadow the tier
    target = bench_target.resolve(isolated_home, "fast")
    assert (target.kind, target.model, target.quant) == ("tier", "qwen3-0.6b", "int4")
    with pytest.raises(NotFoundError, match="unknown bench target 'slow'"):
        bench_target.resolve(isolated_home, "slow")


# --- the server it talks to, on the fake host (tests/fake_host.py) ---------------------------


def test_a_temporary_server_starts_and_stops_through_the_host(isolated_home: Paths, tmp_path: Path) -> None:
    from tests.fake_host import FakeHost

    host = FakeHost()
    host.on_spawn = lambda proc: setattr(proc, "service", bench_target.TEMP_SERVICE)  # no owner mark
    target = bench_target.Target("mine", "path", "local:mine", path=_model(tmp_path / "mine"))
    with bench_target.temporary_server(isolated_home, target, host=host) as server:
        proc = host.proc_of(bench_target.TEMP_SERVICE)
        assert server.temporary and server.pid == proc.pid
        assert server.base_url == f"http://127.0.0.1:{proc.port}/v1" and proc.port == host.next_port
    assert host.running(bench_target.TEMP_SERVICE) is None
    assert host.events[0] == "sigterm raises" and host.events[-2:] == ["signals ignored", "stop bench-server"]


def test_a_temporary_server_refuses_a_held_port_and_a_down_tier_is_said(
        isolated_home: Paths, tmp_path: Path) -> None:
    from mlx_stack.errors import ConflictError, ServiceError
    from tests.fake_host import FakeHost

    host = FakeHost()
    host.busy_ports.add(9123)
    target = bench_target.Target("mine", "path", "local:mine", path=_model(tmp_path / "mine"))
    with pytest.raises(ConflictError, match="port 9123 is held by squatter"), \
            bench_target.temporary_server(isolated_home, target, port=9123, host=host):
        pass
    assert host.spawned() == []
    tier = Tier("fast", "qwen3-0.6b", str(tmp_path / "mine"), 8100)
    down = bench_target.Target("fast", "tier", "qwen3-0.6b", tier=tier,
                               stack=Stack((tier,), ("fast",), Gateway("127.0.0.1", 4000)))
    with pytest.raises(ServiceError, match="tier 'fast' is not running"):
        bench_target.running_tier(isolated_home, down, host=host)
