"""up / down / status / setup on the command line, without starting model servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import stack_store
from mlx_stack.system import pidfile, ports, secrets


def _write_stack(home: Paths, tier_port: int | None = None) -> Stack:
    tp = tier_port or ports.free_port()
    big, small = home.models_dir / "big", home.models_dir / "small"
    big.mkdir(parents=True, exist_ok=True)
    small.mkdir(parents=True, exist_ok=True)
    stack = Stack(
        (Tier("standard", "org/big-model", str(big), tp, tool_call_parser="hermes"),
         Tier("fast", "org/small-model", str(small), ports.free_port())),
        ("standard", "fast"),
        Gateway("127.0.0.1", ports.free_port()),
    )
    stack_store.save(home, stack)
    return stack


def test_up_without_a_stack_says_how_to_make_one(run) -> None:
    r = run("up")
    assert r.exit_code == 4
    assert "no stack configured" in r.stderr and "setup --demo" in r.stderr


def test_unknown_tier(run, isolated_home: Paths) -> None:
    _write_stack(isolated_home)
    for args in (("up", "--tier", "huge"), ("down", "--tier", "huge"), ("up", "--dry-run", "-t", "huge")):
        r = run(*args)
        assert r.exit_code == 4, args
        assert "unknown tier 'huge'" in r.stderr and "standard, fast" in r.stderr


def test_corrupt_stack_file_is_named(run, isolated_home: Paths) -> None:
    isolated_home.home.mkdir(parents=True)
    isolated_home.stack_file.write_text("schema: 1\ntiers: [\n")
    for args in (("up",), ("status",), ("up", "--dry-run")):
        r = run(*args)
        assert r.exit_code == 3, args
        assert str(isolated_home.stack_file) in r.stderr
        assert "Traceback" not in r.stderr


def test_invalid_field_is_named(run, isolated_home: Paths) -> None:
    stack = _write_stack(isolated_home)
    text = isolated_home.stack_file.read_text().replace(f"port: {stack.tiers[1].port}", "port: 99")
    isolated_home.stack_file.write_text(text)
    r = run("up")
    assert r.exit_code == 3
    assert "tiers[1].port" in r.stderr


def test_dry_run_prints_commands_with_the_key_masked(run, isolated_home: Paths) -> None:
    stack = _write_stack(isolated_home)
    key = secrets.ensure_gateway_key(isolated_home)
    secrets.write_secret(isolated_home, secrets.OPENROUTER_KEY, "sk-or-v1-verysecretcloudkey9876")
    r = run("up", "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert key not in r.stdout and "verysecretcloudkey" not in r.stdout
    assert f"MLX_STACK_GATEWAY_KEY='{secrets.mask(key)}'" in r.stdout
    assert f"--port {stack.tiers[0].port} --served-model-name standard" in r.stdout
    assert "--tool-call-parser hermes" in r.stdout
    assert str(isolated_home.models_dir / "big") in r.stdout
    assert not isolated_home.run_dir.exists() or not list(isolated_home.run_dir.glob("*.pid"))


def test_dry_run_for_one_tier_never_creates_the_key(run, isolated_home: Paths) -> None:
    _write_stack(isolated_home)
    r = run("up", "--dry-run", "--tier", "fast")
    assert r.exit_code == 0, r.stderr
    assert "# fast" in r.stdout and "# gateway" in r.stdout and "# standard" not in r.stdout
    assert "<generated at the first up>" in r.stdout
    assert secrets.read_secret(isolated_home, secrets.GATEWAY_KEY) is None


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_busy_port_names_port_and_holder(run, isolated_home: Paths, busy_port: int) -> None:
    _write_stack(isolated_home, tier_port=busy_port)
    r = run("up")
    assert r.exit_code == 5
    assert f"port {busy_port} (for standard) is held by" in r.stderr
    assert f"pid {os.getpid()}" in r.stderr
    assert not list(isolated_home.run_dir.glob("*.pid"))  # nothing was started


def test_missing_model_folder_is_named_before_anything_starts(run, isolated_home: Paths) -> None:
    _write_stack(isolated_home)
    (isolated_home.models_dir / "small").rmdir()
    r = run("up")
    assert r.exit_code == 4
    assert "model folder of tier fast not found" in r.stderr
    assert not list(isolated_home.run_dir.glob("*.pid"))


def test_status_lists_stopped_services_and_masks_the_key(run, isolated_home: Paths) -> None:
    _write_stack(isolated_home)
    key = secrets.ensure_gateway_key(isolated_home)
    r = run("status")
    assert r.exit_code == 3, r.stderr  # services stopped
    assert "standard" in r.stdout and "stopped" in r.stdout and "org/big-model" in r.stdout
    assert key not in r.stdout and secrets.mask(key) in r.stdout
    assert "--show-key" in r.stdout
    shown = run("status", "--show-key")
    assert key in shown.stdout
    data = json.loads(run("status", "--json").stdout)
    assert data["gateway_key"] == secrets.mask(key)
    states = {s["name"]: s["state"] for s in data["services"]}
    assert states == {"standard": "stopped", "fast": "stopped", "gateway": "stopped"}


def test_status_says_crashed_for_a_dead_process(run, isolated_home: Paths) -> None:
    _write_stack(isolated_home)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    record = pidfile.record_for("fast", proc.pid, ["x"])
    proc.wait()
    pidfile.write(isolated_home.run_dir, record)
    data = json.loads(run("status", "--json").stdout)
    fast = next(s for s in data["services"] if s["name"] == "fast")
    assert fast["state"] == "crashed"


def test_down_never_signals_a_recycled_pid(run, isolated_home: Paths) -> None:
    _write_stack(isolated_home)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = psutil.Process(other.pid).create_time()
        pidfile.write(isolated_home.run_dir,
                      pidfile.PidRecord("standard", other.pid, start - 1000, ("vllm-mlx",)))
        r = run("down")
        assert r.exit_code == 0, r.stderr
        assert other.poll() is None  # the unrelated process survives
        assert pidfile.read(isolated_home.run_dir, "standard") is None
    finally:
        other.kill()
        other.wait()


def test_down_with_nothing_running(run, isolated_home: Paths) -> None:
    r = run("down")
    assert r.exit_code == 0
    assert "nothing was running" in r.stderr



def test_down_names_another_program_on_a_stack_port(run, isolated_home: Paths, busy_port: int) -> None:
    _write_stack(isolated_home, tier_port=busy_port)  # nothing of ours ran; something listens there
    r = run("down")
    assert r.exit_code == 7
    assert f"still answering after down: standard (port {busy_port}" in r.stderr
    assert "nothing was running" not in r.stderr
