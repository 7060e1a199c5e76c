"""`bench` bad input on the command line: clear errors, exact exit codes, no server started."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import stack_store
from mlx_stack.system import ports
from tests.helpers import processes_naming


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hf"


def _fake_model(folder: Path) -> Path:
    """Enough for target resolution (config.json + a safetensors file); never served."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_unknown_target(run):
    r = run("bench", "no-such-model")
    assert r.exit_code == 4
    assert "unknown bench target 'no-such-model'" in r.stderr
    assert "models --catalog" in r.stderr and "Traceback" not in r.stderr


def test_catalog_model_not_on_this_machine(run):
    r = run("bench", "qwen3-0.6b")
    assert r.exit_code == 4
    assert "not on this machine" in r.stderr and "mlx-stack pull qwen3-0.6b --bench" in r.stderr


def test_a_folder_that_is_not_a_model(run, tmp_path: Path):
    r = run("bench", str(tmp_path))
    assert r.exit_code == 2
    assert "not a model folder" in r.stderr


@pytest.mark.parametrize("levels", ["0", "1,x", "", "100"])
def test_bad_concurrency(run, levels: str):
    r = run("bench", "anything", "--concurrency", levels)
    assert r.exit_code == 2
    assert "invalid --concurrency" in r.stderr


@pytest.mark.parametrize("args", [("--iterations", "0"), ("--max-tokens", "1"), ("--port", "80")])
def test_out_of_range_options(run, args: tuple[str, str]):
    assert run("bench", "anything", *args).exit_code == 2


def test_a_taken_port_is_a_conflict_and_starts_nothing(run, tmp_path: Path):
    model = _fake_model(tmp_path / "tiny")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        r = run("bench", str(model), "--port", str(port))
    assert r.exit_code == 5
    assert f"port {port} is held by" in r.stderr and "--port" in r.stderr
    assert processes_naming(model) == []


def _stack(home: Paths) -> Stack:
    stack = Stack((Tier("fast", "qwen3-0.6b", "/models/none", ports.free_port()),), ("fast",),
                  Gateway("127.0.0.1", ports.free_port()))
    stack_store.save(home, stack)
    return stack


def test_a_tier_that_is_down(run, isolated_home: Paths):
    stack = _stack(isolated_home)
    r = run("bench", "fast")
    assert r.exit_code == 7
    assert f"tier 'fast' is not running (port {stack.tiers[0].port})" in r.stderr
    assert "mlx-stack up --tier fast" in r.stderr


def test_port_is_not_for_a_tier(run, isolated_home: Paths):
    _stack(isolated_home)
    r = run("bench", "fast", "--port", "5000")
    assert r.exit_code == 2
    assert "--port applies to a temporary server" in r.stderr


def test_unknown_target_lists_the_tiers(run, isolated_home: Paths):
    _stack(isolated_home)
    r = run("bench", "slow")
    assert r.exit_code == 4
    assert "tiers: fast" in r.stderr
