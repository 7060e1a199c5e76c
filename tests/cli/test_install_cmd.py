"""`mlx-stack install` / `uninstall` through the CLI, with a recording launchctl."""

from __future__ import annotations

import json
import plistlib
from pathlib import Path

import pytest

from mlx_stack.services import install
from mlx_stack.system.service_manager import Systemd
from tests.fake_service_manager import FakeLaunchctl


@pytest.fixture
def launchctl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeLaunchctl:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    fake = FakeLaunchctl()
    monkeypatch.setattr(install, "default_host", lambda: install.LoginHost(fake, "darwin"))
    return fake


def test_dry_run_prints_the_plist_and_the_commands(run, launchctl: FakeLaunchctl) -> None:
    r = run("install", "--dry-run")
    assert r.exit_code == 0
    assert "<key>Label</key>" in r.stdout and "<string>watch</string>" in r.stdout
    assert "launchctl bootstrap gui/" in r.stdout
    assert launchctl.calls == []
    body = r.stdout.split("\n", 1)[1].split("# then:")[0]
    plistlib.loads(body.encode())


def test_install_status_uninstall(run, launchctl: FakeLaunchctl) -> None:
    r = run("install")
    assert r.exit_code == 0, r.stderr
    assert "watchdog installed (launchd)" in r.stderr
    r = run("install", "--status")
    assert r.exit_code == 0
    assert "launchd: loaded, running" in r.stdout and "pid: 4242" in r.stdout
    data = json.loads(run("install", "--status", "--json").stdout)
    assert data["loaded"] and data["running"] and data["pid"] == 4242
    r = run("uninstall")
    assert r.exit_code == 0 and "watchdog uninstalled" in r.stderr
    r = run("uninstall")
    assert r.exit_code == 0 and "not installed" in r.stderr


def test_no_systemd_exits_8(run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install, "default_host", lambda: install.LoginHost(platform="linux"))
    monkeypatch.setattr(Systemd, "available", staticmethod(lambda which=None: False))
    r = run("install")
    assert r.exit_code == 8
    assert "systemd is not running here" in r.stderr and "watch --daemon" in r.stderr
    assert run("install", "--status").exit_code == 8
    assert run("uninstall").exit_code == 8
