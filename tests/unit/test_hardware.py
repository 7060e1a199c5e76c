"""Parsers on every real sample in shared/data/hw-samples, and on future chips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlx_stack.core import chips, doctor_report
from mlx_stack.core.hardware import (
    GIB,
    PerfLevel,
    cpu_profile,
    default_gpu_limit,
    parse_ioreg_gpu_cores,
    parse_sp_displays,
    parse_sp_hardware,
    parse_sysctl,
    perf_levels,
    profile_from_mac,
)
from mlx_stack.errors import NotFoundError, UsageError
from mlx_stack.services.hardware import Plan, plan_profile

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "hw-samples"
LOCAL = Path(__file__).parent / "hw_samples"


def sample(name: str) -> str:
    """Real samples from shared/data, with a vendored copy so CI runs without it."""
    for base in (SAMPLES, LOCAL):
        if (base / name).exists():
            return (base / name).read_text()
    raise FileNotFoundError(name)


def test_every_sample_is_vendored_and_parsed():
    names = {p.name for p in LOCAL.iterdir() if p.suffix in (".txt", ".json")}
    if SAMPLES.is_dir():
        shared = {p.name for p in SAMPLES.iterdir() if p.name != "README.md"}
        assert shared <= names, "vendor new samples into tests/unit/hw_samples"
    for name in names:
        text = sample(name)
        if name.endswith(".doctor.json"):
            replay_doctor_report(text)
        elif name.endswith(".sysctl.txt"):
            assert perf_levels(parse_sysctl(text)), name
        elif "ioreg" in name:
            assert parse_ioreg_gpu_cores(text), name
        elif "SPDisplays" in name:
            assert parse_sp_displays(text)[0], name
        elif "SPHardware" in name:
            assert parse_sp_hardware(text)["memory_bytes"], name


def replay_doctor_report(text: str) -> None:
    """A `mlx-stack doctor --report` file is a captured sample: its raw outputs, parsed
    here, must give the profile the reporting machine showed (DEVELOPING.md)."""
    captured = doctor_report.hardware_sample(json.loads(text))
    assert captured["mac"] is not None, "not a report from a Mac"
    parsed = profile_from_mac(**captured["mac"]).as_dict()
    for key in ("chip", "gpu_cores", "memory_bytes", "cpu_levels", "bandwidth_gbs", "gpu_limit_bytes",
                "rosetta"):
        assert parsed[key] == captured["profile"][key], key


def test_a_doctor_report_replays_as_a_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from mlx_stack.paths import Paths
    from mlx_stack.services import doctor, install
    from tests.fake_machine import FakeMac
    from tests.fake_service_manager import FakeLaunchctl

    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setattr(doctor, "machine", FakeMac())
    monkeypatch.setattr(install, "default_host", lambda: install.LoginHost(FakeLaunchctl(), "darwin"))
    report = doctor.run(Paths.from_env()).report
    path = tmp_path / "m4.doctor.json"
    path.write_text(json.dumps(report, indent=2))
    replay_doctor_report(path.read_text())
    assert report["checks"][0]["data"]["gpu_cores"] == 10


def test_m4_max_sysctl():
    sc = parse_sysctl(sample("m4-max.sysctl.txt"))
    assert sc["machdep.cpu.brand_string"] == "Apple M4 Max"
    # no nperflevels line; level 1 has no name line: it is kept, named by index
    assert perf_levels(sc) == (PerfLevel("Performance", 12), PerfLevel("level 1", 4))
    hw = profile_from_mac(sample("m4-max.sysctl.txt") + "hw.memsize: 137438953472\n")
    assert hw.chip == "M4 Max" and hw.gpu_cores is None
    assert hw.bandwidth_gbs == 546 and "assumed 40-core" in hw.bandwidth_source
    assert hw.memory_bytes == 128 * GIB and hw.cpu_cores == 16
    assert any("GPU core count" in n for n in hw.notes)


def test_perf_levels_by_their_own_names():
    assert perf_levels(parse_sysctl(sample("m5-max.sysctl.txt"))) == (
        PerfLevel("Super", 6), PerfLevel("Performance", 12))
    assert perf_levels(parse_sysctl(sample("m1-pro.sysctl.txt"))) == (
        PerfLevel("Performance", 8), PerfLevel("Efficiency", 2))
    assert [lvl.name for lvl in perf_levels(parse_sysctl(sample("m6.sysctl.txt")))] == [
        "Super", "Performance", "Efficiency"]


def test_gpu_cores_from_ioreg_and_system_profiler():
    assert parse_ioreg_gpu_cores(sample("m4.ioreg-AGXAccelerator.txt")) == 10
    assert parse_sp_displays(sample("m4.SPDisplaysDataType.json")) == (10, "Apple M4")
    assert parse_ioreg_gpu_cores("garbage") is None
    assert parse_sp_displays("not json") == (None, None)
    assert parse_sp_displays('{"SPDisplaysDataType": "odd"}') == (None, None)


def test_sp_hardware():
    m5 = parse_sp_hardware(sample("m5-max.SPHardwareDataType.json"))
    assert m5["chip"] == "Apple M5 Max" and m5["memory_bytes"] == 128 * GIB and m5["cpu_cores"] == 18
    m1 = parse_sp_hardware(sample("m1.SPHardwareDataType.json"))
    assert m1["machine_model"] == "MacBookAir10,1" and m1["memory_bytes"] == 16 * GIB


def test_profile_from_system_profiler_only():
    hw = profile_from_mac(
        "", sp_hardware_json=sample("m1.SPHardwareDataType.json"),
        sp_displays_json='{"SPDisplaysDataType":[{"sppci_cores":"8","sppci_model":"Apple M1"}]}',
    )
    assert (hw.chip, hw.gpu_cores, hw.bandwidth_gbs) == ("M1", 8, 68.25)
    assert hw.gpu_limit_bytes == default_gpu_limit(16 * GIB)
    assert "estimated" in hw.gpu_limit_source


def test_m4_with_ioreg_and_wired_limit_and_working_set():
    text = "machdep.cpu.brand_string: Apple M4\nhw.memsize: 17179869184\niogpu.wired_limit_mb: 12288\n"
    hw = profile_from_mac(text, ioreg_text=sample("m4.ioreg-AGXAccelerator.txt"))
    assert (hw.gpu_cores, hw.bandwidth_gbs) == (10, 120)
    assert hw.gpu_limit_bytes == 12288 * 1024 * 1024 and hw.gpu_limit_source == "iogpu.wired_limit_mb"
    hw = profile_from_mac(text, working_set_bytes=11 * GIB)
    assert hw.gpu_limit_bytes == 11 * GIB and "Metal" in hw.gpu_limit_source


def test_rosetta_is_detected_and_noted():
    text = ("machdep.cpu.brand_string: VirtualApple @ 2.50GHz processor\nsysctl.proc_translated: 1\n"
            "hw.memsize: 17179869184\n")
    hw = profile_from_mac(text, sp_hardware_json=sample("m1.SPHardwareDataType.json"))
    assert hw.rosetta and hw.chip == "M1"
    assert any("Rosetta" in n for n in hw.notes)


@pytest.mark.parametrize("brand, expected_bw", [
    ("Apple M7 Pro", 307), ("Apple M9", 153), ("Apple M6 Max", 614), ("Apple M8 Ultra", 1200),
])
def test_future_chips_degrade_gracefully(brand, expected_bw):
    hw = profile_from_mac(f"machdep.cpu.brand_string: {brand}\nhw.memsize: 68719476736\n"
                          + sample("m6.sysctl.txt"))
    assert hw.chip == brand.removeprefix("Apple ")
    assert not hw.chip_known and hw.bandwidth_gbs == expected_bw
    assert hw.bandwidth_source.startswith("assumed from")
    assert any("newer than the chip table" in n for n in hw.notes)
    assert len(hw.cpu_levels) == 3


def test_non_m_chip_and_empty_input():
    hw = profile_from_mac("machdep.cpu.brand_string: Apple A18 Pro\n")
    assert hw.bandwidth_gbs is None and hw.memory_bytes == 0 and hw.gpu_limit_bytes is None
    hw = profile_from_mac("")
    assert hw.chip == "unknown Apple chip"


def test_binned_max_chips_differ_in_bandwidth():
    for chip, low, high in (("M3 Max", 300, 400), ("M4 Max", 410, 546), ("M5 Max", 460, 614)):
        bins = chips.variants(chip)
        assert [b.bandwidth_gbs for b in bins] == [low, high]


def test_chip_names():
    assert chips.normalize_chip_name("Apple M4 Max") == "M4 Max"
    assert chips.normalize_chip_name("m4max") == "M4 Max"
    assert chips.normalize_chip_name("  m2   ultra ") == "M2 Ultra"
    assert chips.normalize_chip_name("Intel Core i9") is None
    assert "M5 Ultra" in chips.known_chip_names()


def test_cpu_profile_is_labelled():
    hw = cpu_profile("AMD EPYC", 16 * GIB, 4)
    assert hw.kind == "cpu" and hw.bandwidth_gbs is None
    assert hw.label.startswith("Linux CPU profile")
    assert hw.as_dict()["profile_key"] == "cpu-16gb"
    assert cpu_profile("x", GIB, 1, bandwidth_gbs=50).bandwidth_source == "given"


def test_plan_profiles():
    hw = plan_profile(Plan("M4 Max", 40, 128))
    assert (hw.kind, hw.chip, hw.bandwidth_gbs, hw.memory_bytes) == ("plan", "M4 Max", 546, 128 * GIB)
    assert hw.gpu_limit_bytes == 96 * GIB
    assert plan_profile(Plan("m4 max", 32, 36)).bandwidth_gbs == 410
    hw = plan_profile(Plan("M1"))
    assert hw.gpu_cores == 8 and hw.memory_bytes == 16 * GIB and len(hw.notes) == 2
    assert plan_profile(Plan("M7 Pro", memory_gb=64, bandwidth_gbs=400)).bandwidth_source == "given"


def test_plan_errors():
    with pytest.raises(NotFoundError) as exc:
        plan_profile(Plan("M7 Pro", memory_gb=64))
    assert "M4 Max" in (exc.value.hint or "")
    with pytest.raises(NotFoundError):
        plan_profile(Plan("Threadripper"))
    with pytest.raises(UsageError) as bad_cores:
        plan_profile(Plan("M4 Max", 36))
    assert "32 or 40" in (bad_cores.value.hint or "")
    for plan in (Plan("M4", memory_gb=0), Plan("M4", gpu_cores=0), Plan("M4", bandwidth_gbs=-1)):
        with pytest.raises(UsageError):
            plan_profile(plan)
    with pytest.raises(UsageError):
        plan_profile(Plan("M7 Pro", bandwidth_gbs=300))  # unknown chip needs --memory
