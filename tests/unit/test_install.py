"""install / uninstall / status against recording fakes of launchctl and systemctl."""

from __future__ import annotations

import os
import plistlib
from pathlib import Path

import pytest

from mlx_stack.errors import ServiceError, UnsupportedError
from mlx_stack.paths import Paths
from mlx_stack.services import install
from mlx_stack.system.service_manager import Launchd, RunResult, Systemd
from tests.fake_service_manager import FakeLaunchctl, FakeSystemctl


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "user"
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return h


@pytest.fixture
def launchctl(home: Path) -> FakeLaunchctl:
    return FakeLaunchctl()


def _mac(fake: FakeLaunchctl) -> install.LoginHost:
    return install.LoginHost(fake, "darwin")


def test_install_writes_a_valid_plist_and_bootstraps(launchctl: FakeLaunchctl, isolated_home: Paths,
                                                     home: Path) -> None:
    plan = install.install(isolated_home, _mac(launchctl))
    assert plan.unit_file == home / "Library/LaunchAgents/io.github.mlx-stack.watchdog.plist"
    data = plistlib.loads(plan.unit_file.read_bytes())
    assert data["EnvironmentVariables"]["MLX_STACK_HOME"] == str(isolated_home.home)
    assert Path(data["ProgramArguments"][0]).is_absolute()
    assert data["ProgramArguments"][-2:] == ["watch", "--standby"]
    uid = os.getuid()
    assert launchctl.calls == [
        ["launchctl", "print", f"gui/{uid}/io.github.mlx-stack.watchdog"],
        ["launchctl", "enable", f"gui/{uid}/io.github.mlx-stack.watchdog"],
        ["launchctl", "bootstrap", f"gui/{uid}", str(plan.unit_file)],
    ]


def test_reinstall_boots_out_and_waits_for_launchd_to_let_go(launchctl: FakeLaunchctl,
                                                             isolated_home: Paths) -> None:
    launchctl.loaded = True
    install.install(isolated_home, _mac(launchctl))
    # bootout is asynchronous: print keeps answering until the job is gone, then bootstrap.
    assert launchctl.verbs() == ["print", "bootout", "print", "print", "print", "enable", "bootstrap"]
    assert launchctl.loaded


def test_bootstrap_is_retried_while_launchd_drains() -> None:
    fake = FakeLaunchctl()
    busy = {"left": 2}

    def flaky(argv, timeout=30.0):
        if argv[1] == "bootstrap" and busy["left"]:
            busy["left"] -= 1
            fake.calls.append(list(argv))
            return RunResult(tuple(argv), 37, "", "Operation already in progress")
        return fake(argv, timeout)

    Launchd(flaky, uid=501, sleep=lambda s: None).load("lbl", Path("/p.plist"))
    assert fake.verbs() == ["print", "enable", "bootstrap", "bootstrap", "bootstrap"]
    assert fake.loaded


def test_bootout_that_never_settles_is_an_error() -> None:
    fake = FakeLaunchctl(loaded=True, drain=10**6)
    t = iter(range(10**6))
    mgr = Launchd(fake, uid=501, sleep=lambda s: None, clock=lambda: float(next(t)), settle_timeout=5)
    with pytest.raises(ServiceError, match="still lists"):
        mgr.unload("lbl")


def test_status_reports_loaded_running_pid(launchctl: FakeLaunchctl, isolated_home: Paths) -> None:
    kind, _path, st = install.status(isolated_home, _mac(launchctl))
    assert (kind, st.installed, st.loaded, st.running, st.pid) == ("launchd", False, False, False, None)
    install.install(isolated_home, _mac(launchctl))
    _, _, st = install.status(isolated_home, _mac(launchctl))
    assert (st.installed, st.loaded, st.running, st.pid) == (True, True, True, 4242)


def test_uninstall_boots_out_and_removes_the_plist(launchctl: FakeLaunchctl, isolated_home: Paths) -> None:
    plan = install.install(isolated_home, _mac(launchctl))
    launchctl.calls.clear()
    path, existed = install.uninstall(isolated_home, _mac(launchctl))
    assert existed and path == plan.unit_file and not path.exists()
    assert "bootout" in launchctl.verbs()
    assert not any(c[1] in ("kill", "kickstart") for c in launchctl.calls)  # services are not touched


def test_dry_run_plan_changes_nothing(launchctl: FakeLaunchctl, isolated_home: Paths) -> None:
    plan = install.plan(isolated_home, _mac(launchctl))
    assert launchctl.calls == [] and not plan.unit_file.exists()
    assert [c[1] for c in plan.commands] == ["bootout", "enable", "bootstrap"]
    plistlib.loads(plan.unit_text.encode())


def test_linux_uses_a_systemd_user_unit(monkeypatch: pytest.MonkeyPatch, isolated_home: Paths,
                                         home: Path) -> None:
    fake = FakeSystemctl()
    linux = install.LoginHost(fake, "linux")
    monkeypatch.setattr(Systemd, "available", staticmethod(lambda which=None: True))
    plan = install.install(isolated_home, linux)
    assert plan.unit_file == home / ".config/systemd/user/mlx-stack-watchdog.service"
    assert "ExecStart=" in plan.unit_file.read_text()
    assert fake.calls == [["systemctl", "--user", "daemon-reload"],
                          ["systemctl", "--user", "enable", "mlx-stack-watchdog.service"],
                          ["systemctl", "--user", "restart", "mlx-stack-watchdog.service"]]
    _, _, st = install.status(isolated_home, linux)
    assert (st.loaded, st.running, st.pid) == (True, True, 777)
    fake.calls.clear()
    install.uninstall(isolated_home, linux)
    assert fake.calls[0] == ["systemctl", "--user", "disable", "--now", "mlx-stack-watchdog.service"]
    assert not plan.unit_file.exists()


def test_linux_without_systemd_is_unsupported(monkeypatch: pytest.MonkeyPatch, isolated_home: Paths) -> None:
    monkeypatch.setattr(Systemd, "available", staticmethod(lambda which=None: False))
    with pytest.raises(UnsupportedError) as exc:
        install.install(isolated_home, install.LoginHost(FakeSystemctl(), "linux"))
    assert exc.value.exit_code == 8


def test_other_platforms_are_unsupported(isolated_home: Paths) -> None:
    with pytest.raises(UnsupportedError, match="no launchd or systemd on win32"):
        install.plan(isolated_home, install.LoginHost(FakeLaunchctl(), "win32"))


def test_the_agent_finds_the_hub_cache_of_this_shell(launchctl: FakeLaunchctl, isolated_home: Paths,
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "models"))
    plan = install.plan(isolated_home, _mac(launchctl))
    env = plistlib.loads(plan.unit_text.encode())["EnvironmentVariables"]
    assert env["HF_HOME"] == str(tmp_path / "xdg" / "huggingface")
    assert env["HF_HUB_CACHE"] == str(tmp_path / "models")
