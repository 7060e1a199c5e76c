"""`mlx-stack doctor` through the CLI: text, --json, --report, exit codes; on this machine
and as a Mac (the captured outputs of tests/unit/hw_samples, a recording launchctl)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlx_stack.paths import Paths
from mlx_stack.services import doctor, install
from mlx_stack.system import ports, secrets
from tests.fake_machine import SERIALS, FakeMac
from tests.fake_service_manager import FakeLaunchctl

GATEWAY_KEY = "sk-mlxstack-doctor-test-0123456789abcdef"
CLOUD_KEY = "sk-or-v1-doctor-test-fedcba9876543210"
HF_TOKEN = "hf_doctortestTOKEN0123456789abcd"


@pytest.fixture(autouse=True)
def own_home_and_port(run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A home folder of its own (no login service a developer installed), and never the
    default port 4000 (another stack may hold it on this machine)."""
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert run("config", "set", "litellm-port", str(ports.free_port())).exit_code == 0


@pytest.fixture
def mac(monkeypatch: pytest.MonkeyPatch) -> FakeLaunchctl:
    monkeypatch.setattr(doctor, "machine", FakeMac())
    fake = FakeLaunchctl()
    monkeypatch.setattr(install, "default_host", lambda: install.LoginHost(fake, "darwin"))
    return fake


def checks(stdout: str) -> dict[str, dict]:
    return {c["id"]: c for c in json.loads(stdout)["checks"]}


def test_text_on_this_machine(run) -> None:
    r = run("doctor")
    assert r.exit_code == 0, r.stdout + r.stderr
    for title in ("hardware", "Python", "packages", "MLX", "disk (models)", "state files", "ports",
                  "secrets", "login service"):
        assert title in r.stdout
    assert "nothing failed" in r.stdout.splitlines()[-1]


def test_json_is_the_report(run) -> None:
    r = run("doctor", "--json")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["format"] == "mlx-stack-doctor-report" and doc["exit_code"] == 0
    assert set(doc["summary"]) == {"PASS", "WARN", "FAIL", "SKIP"}
    found = checks(r.stdout)
    assert found["packages"]["data"]["packages"]["vllm-mlx"]["version"]
    assert found["ports"]["status"] == "PASS"
    assert all(c["status"] in ("PASS", "WARN", "FAIL", "SKIP") for c in found.values())


def test_a_corrupt_stack_file_fails_with_exit_1(run, isolated_home: Paths) -> None:
    isolated_home.stack_file.write_text("schema: 1\ntiers: [unclosed\n")
    r = run("doctor")
    assert r.exit_code == 1
    assert "FAIL  state files" in r.stdout and "stack.yaml" in r.stdout and "fix:" in r.stdout
    assert "some checks FAILED" in r.stdout


def test_loose_secret_permissions_fail(run, isolated_home: Paths) -> None:
    secrets.write_secret(isolated_home, secrets.GATEWAY_KEY, GATEWAY_KEY)
    os.chmod(isolated_home.secrets_dir / secrets.GATEWAY_KEY, 0o644)
    r = run("doctor", "--json")
    assert r.exit_code == 1
    found = checks(r.stdout)["secrets"]
    assert found["status"] == "FAIL" and "gateway-key is 644" in found["detail"]
    assert GATEWAY_KEY not in r.stdout


@pytest.fixture
def foreign_listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_held_by_another_program_fails(run, foreign_listener: int) -> None:
    assert run("config", "set", "litellm-port", str(foreign_listener)).exit_code == 0
    r = run("doctor", "--json")
    assert r.exit_code == 1
    found = checks(r.stdout)["ports"]
    assert found["status"] == "FAIL" and f"{foreign_listener} (gateway) is held by" in found["detail"]


def test_report_is_written_private_and_redacted(run, tmp_path: Path, isolated_home: Paths,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # the state folder lives under it: shown as ~
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    secrets.write_secret(isolated_home, secrets.GATEWAY_KEY, GATEWAY_KEY)
    secrets.write_secret(isolated_home, secrets.OPENROUTER_KEY, CLOUD_KEY)
    assert run("setup", "--demo", "--no-start").exit_code == 0
    out = tmp_path / "report.json"
    r = run("doctor", "--report", str(out))
    assert r.exit_code == 0, r.stdout
    assert "report written to" in r.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    text = out.read_text()
    for secret in (GATEWAY_KEY, CLOUD_KEY, HF_TOKEN):
        assert secret not in text and secret not in r.stdout
    assert str(tmp_path) not in text and "~/mlx-stack-home" in text
    doc = json.loads(text)
    assert doc["raw"]["config"]["openrouter-key"] == "<set>"
    assert "demo-standard" in doc["raw"]["stack_yaml"]
    assert {"service:standard", "service:gateway"} <= {c["id"] for c in doc["checks"]}


def test_bad_report_path_is_exit_2_and_writes_nothing(run, tmp_path: Path) -> None:
    r = run("doctor", "--report", str(tmp_path / "missing" / "r.json"))
    assert r.exit_code == 2 and "cannot write the report" in r.stderr and "hint:" in r.stderr
    assert run("doctor", "--report", str(tmp_path)).exit_code == 2
    assert not (tmp_path / "missing").exists()


def test_as_a_mac(run, mac: FakeLaunchctl, tmp_path: Path) -> None:
    out = tmp_path / "mac.json"
    r = run("doctor", "--report", str(out))
    assert r.exit_code == 0, r.stdout
    assert "Apple M4, 10-core GPU, 16 GB" in r.stdout
    assert "Metal available (Apple M4)" in r.stdout
    assert "native arm64 Python" in r.stdout
    found = checks(run("doctor", "--json").stdout)
    assert found["gpu-limit"]["status"] == "PASS" and "Metal" in found["gpu-limit"]["detail"]
    assert found["hardware"]["data"]["sysctl"] == {
        "hw.memsize": "17179869184", "hw.physicalcpu": "10", "hw.nperflevels": "2",
        "hw.perflevel0.physicalcpu": "4", "hw.perflevel0.name": "Performance",
        "hw.perflevel1.physicalcpu": "6", "hw.perflevel1.name": "Efficiency",
        "machdep.cpu.brand_string": "Apple M4", "sysctl.proc_translated": "0", "iogpu.wired_limit_mb": "0"}
    assert found["login-service"]["detail"].startswith("launchd: not installed")
    assert mac.verbs() and set(mac.verbs()) == {"print"}  # looked, changed nothing
    doc = json.loads(out.read_text())
    assert "hw.perflevel0.name: Performance" in doc["raw"]["mac"]["sysctl"]
    assert '"gpu-core-count" = 10' in doc["raw"]["mac"]["ioreg"]
    assert doc["raw"]["mac"]["working_set_bytes"] == 12 * 1024**3
    for serial in SERIALS:
        assert serial not in out.read_text()


def test_as_a_mac_with_the_login_service_installed(run, mac: FakeLaunchctl) -> None:
    assert run("install").exit_code == 0
    found = checks(run("doctor", "--json").stdout)["login-service"]
    assert found["status"] == "PASS" and "loaded, running (pid 4242)" in found["detail"]
    mac.running, mac.last_exit = False, "78: EX_CONFIG"
    found = checks(run("doctor", "--json").stdout)["login-service"]
    assert found["status"] == "WARN" and "last exit 78: EX_CONFIG" in found["detail"]
    assert "manager_output" in json.loads(run("doctor", "--json").stdout)["raw"]["login_service"]


def test_as_a_mac_under_rosetta_fails(run, mac: FakeLaunchctl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "machine", FakeMac(arch="x86_64", metal=False))
    r = run("doctor")
    assert r.exit_code == 1
    assert "FAIL  Rosetta" in r.stdout and "arm64 Python" in r.stdout
    assert "FAIL  MLX" in r.stdout and "Metal is not available" in r.stdout


def test_an_internal_error_in_one_step_is_a_fail_not_a_traceback(run, mac: FakeLaunchctl,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise RuntimeError("launchctl exploded")

    monkeypatch.setattr(install, "program", broken)
    r = run("doctor", "--json")
    assert r.exit_code == 1
    found = checks(r.stdout)["login-service"]
    assert found["status"] == "FAIL" and "launchctl exploded" in found["detail"]


def test_an_unreadable_state_file_is_a_fail(run, isolated_home: Paths,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from mlx_stack.services import pulled_models

    isolated_home.pulled_file.parent.mkdir(parents=True, exist_ok=True)
    isolated_home.pulled_file.write_text("models: []\n")

    def unreadable(p: Paths) -> None:  # what a file of another owner, mode 0600, does (not as root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pulled_models, "load", unreadable)
    r = run("doctor", "--json")
    assert r.exit_code == 1
    found = checks(r.stdout)["state-files"]
    assert found["status"] == "FAIL" and "pulled.yaml: Permission denied" in found["detail"]
