"""`status` takes the hardware profile detected once per boot (run/hardware.json): the
round trip through JSON, when it is reused, when it is detected again, and bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlx_stack.core.hardware import GIB, HardwareProfile, cpu_profile, profile_from_mac
from mlx_stack.paths import Paths
from mlx_stack.services import hardware
from mlx_stack.system import boot
from tests.unit.test_hardware import sample


def _profiles() -> list[HardwareProfile]:
    return [
        profile_from_mac(sample("m4-max.sysctl.txt")),
        profile_from_mac(sample("m5-max.sysctl.txt"),
                         sp_hardware_json=sample("m5-max.SPHardwareDataType.json")),
        profile_from_mac("machdep.cpu.brand_string: Apple M7 Pro\nhw.memsize: 68719476736\n"
                         + sample("m6.sysctl.txt")),  # a future chip, with notes
        profile_from_mac("machdep.cpu.brand_string: Apple M4\nhw.memsize: 17179869184\n",
                         ioreg_text=sample("m4.ioreg-AGXAccelerator.txt"), working_set_bytes=11 * GIB),
        cpu_profile("AMD EPYC", 16 * GIB, 4),
        cpu_profile("x", GIB, None, bandwidth_gbs=50),
    ]


@pytest.mark.parametrize("profile", _profiles(), ids=lambda hw: hw.profile_key)
def test_a_profile_survives_its_json(profile: HardwareProfile):
    kept = json.loads(json.dumps(profile.as_dict()))
    assert HardwareProfile.from_dict(kept) == profile


@pytest.mark.parametrize("change", [
    {"memory_bytes": "16"}, {"memory_bytes": None}, {"kind": 3}, {"rosetta": "no"}, {"gpu_cores": True},
    {"cpu_levels": [{"name": "P"}]}, {"cpu_levels": "P"}, {"notes": None}, {"bandwidth_gbs": "fast"},
])
def test_a_damaged_profile_is_refused(change: dict[str, object]):
    d = {**cpu_profile("AMD EPYC", 16 * GIB, 4).as_dict(), **change}
    with pytest.raises(ValueError):
        HardwareProfile.from_dict(d)


class Counted:
    """``hardware.detect`` counted; the boot marks scripted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.detected = 0
        self.marks: dict[str, object] = {"boot_time": 1000}
        monkeypatch.setattr(hardware, "detect", self._detect)
        monkeypatch.setattr(boot, "marks", lambda: dict(self.marks))

    def _detect(self, plan: object = None) -> HardwareProfile:
        self.detected += 1
        return cpu_profile(f"CPU #{self.detected}", 16 * GIB, 4)


@pytest.fixture
def home(tmp_path: Path) -> Paths:
    (tmp_path / "home").mkdir()
    return Paths(tmp_path / "home")


def test_detected_once_per_boot(home: Paths, monkeypatch: pytest.MonkeyPatch):
    counted = Counted(monkeypatch)
    first = hardware.this_boot(home)
    assert hardware.this_boot(home) == first and counted.detected == 1
    kept = home.run_dir / hardware.HARDWARE_FILE
    assert oct(kept.stat().st_mode & 0o777) == "0o600"
    counted.marks = {"boot_time": 2000}  # rebooted
    assert hardware.this_boot(home).chip == "CPU #2"
    counted.marks = {"boot_time": 2000, "iogpu.wired_limit_mb": "24576"}  # the GPU limit was raised
    assert hardware.this_boot(home).chip == "CPU #3" and counted.detected == 3
    assert hardware.this_boot(home).chip == "CPU #3"


@pytest.mark.parametrize("part, key, value", [
    ("marks", "mlx_stack", "0.0.1"),  # an upgrade
    ("profile", "memory_bytes", "lots"),  # a damaged profile under good marks
])
def test_a_changed_kept_file_is_detected_over(home: Paths, monkeypatch: pytest.MonkeyPatch,
                                              part: str, key: str, value: str):
    counted = Counted(monkeypatch)
    hardware.this_boot(home)
    kept = home.run_dir / hardware.HARDWARE_FILE
    data = json.loads(kept.read_text())
    data[part][key] = value
    kept.write_text(json.dumps(data))
    assert hardware.this_boot(home).chip == "CPU #2" and counted.detected == 2


@pytest.mark.parametrize("text", ["", "{", "[]", '{"marks": {"boot_time": 1000}}', "\xff\xfe",
                                  '{"marks": null, "profile": {}}'])
def test_a_bad_file_is_detected_over(home: Paths, monkeypatch: pytest.MonkeyPatch, text: str):
    Counted(monkeypatch)
    home.run_dir.mkdir(parents=True)
    (home.run_dir / hardware.HARDWARE_FILE).write_text(text, encoding="latin-1")
    assert hardware.this_boot(home).chip == "CPU #1"
    assert hardware.this_boot(home).chip == "CPU #1"  # and written over


@pytest.mark.parametrize("kind", ["fifo", "folder", "huge"])
def test_something_else_in_its_place_never_hangs_it(home: Paths, monkeypatch: pytest.MonkeyPatch, kind: str):
    Counted(monkeypatch)
    home.run_dir.mkdir(parents=True)
    kept = home.run_dir / hardware.HARDWARE_FILE
    if kind == "fifo":
        os.mkfifo(kept)  # (a plain read would wait for a writer for ever)
    elif kind == "folder":
        kept.mkdir()
    else:
        kept.write_text("{" + " " * (1 << 20) + "}")
    assert hardware.this_boot(home).chip == "CPU #1"


def test_no_state_folder_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    Counted(monkeypatch)
    p = Paths(tmp_path / "never-set-up")
    assert hardware.this_boot(p).chip == "CPU #1"
    assert not p.home.exists()


def test_an_unwritable_run_folder_still_answers(home: Paths, monkeypatch: pytest.MonkeyPatch):
    counted = Counted(monkeypatch)
    home.run_dir.write_text("not a folder")  # (root writes through a read-only mode)
    assert hardware.this_boot(home).chip == "CPU #1"
    assert hardware.this_boot(home).chip == "CPU #2"  # nothing kept: detected each time
    assert counted.detected == 2


def test_the_real_marks_name_this_boot():
    marks = boot.marks()
    assert isinstance(marks["boot_time"], int) and marks["boot_time"] > 0
    assert boot.marks()["boot_time"] == marks["boot_time"]


def test_on_a_mac_the_gpu_limit_is_a_mark(monkeypatch: pytest.MonkeyPatch):
    import subprocess

    ran: list[list[str]] = []

    def sysctl(args: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        ran.append(args)
        return subprocess.CompletedProcess(args, 0, "24576\n", "")

    monkeypatch.setattr(boot.sys, "platform", "darwin")
    monkeypatch.setattr(boot.subprocess, "run", sysctl)
    assert boot.marks()["iogpu.wired_limit_mb"] == "24576"
    assert ran == [["sysctl", "-n", "iogpu.wired_limit_mb"]]

    def missing(args: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError("sysctl")

    monkeypatch.setattr(boot.subprocess, "run", missing)
    assert boot.marks()["iogpu.wired_limit_mb"] is None
