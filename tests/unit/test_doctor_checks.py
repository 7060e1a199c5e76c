"""The doctor's judgements, from their inputs (Mac-shaped ones included), on any machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_stack.core import doctor as d
from mlx_stack.core import doctor_stack as ds
from mlx_stack.core import service_units
from mlx_stack.core.hardware import GIB, cpu_profile, parse_sysctl, profile_from_mac
from tests.fake_machine import M4_SYSCTL, SAMPLES

IOREG = (SAMPLES / "m4.ioreg-AGXAccelerator.txt").read_text()


def m4(**kw):
    return profile_from_mac(M4_SYSCTL, ioreg_text=IOREG, **kw)


def test_exit_code_fails_only_on_fail():
    ok, warn, skip = (d.Check("a", "a", s, "") for s in (d.PASS, d.WARN, d.SKIP))
    assert d.exit_code([ok, warn, skip]) == 0
    assert d.exit_code([ok, d.Check("b", "b", d.FAIL, "")]) == 1
    assert d.summary([ok, warn, warn]) == {"PASS": 1, "WARN": 2, "FAIL": 0, "SKIP": 0}


def test_hardware_on_a_mac_and_elsewhere():
    c = d.hardware(m4(working_set_bytes=12 * GIB), "darwin")
    assert c.status == d.PASS and "M4" in c.detail and "120" in c.detail
    assert c.data["gpu_cores"] == 10 and c.data["memory_bytes"] == 16 * GIB
    future = profile_from_mac("machdep.cpu.brand_string: Apple M7 Pro\nhw.memsize: 68719476736\n")
    c = d.hardware(future, "darwin")
    assert c.status == d.WARN and "newer than the chip table" in c.detail and "--report" in (c.fix or "")
    assert d.hardware(profile_from_mac(""), "darwin").status == d.FAIL  # nothing readable
    linux = cpu_profile("AMD EPYC", 16 * GIB, 4)
    assert d.hardware(linux, "linux").status == d.PASS
    intel_mac = cpu_profile("Intel Core i9", 16 * GIB, 8, os_name="macOS (Intel)")
    assert d.hardware(intel_mac, "darwin").status == d.FAIL


def test_gpu_limit_from_metal_from_sysctl_and_low():
    sc = parse_sysctl(M4_SYSCTL)
    c = d.gpu_limit(m4(working_set_bytes=12 * GIB), sc)
    assert c.status == d.PASS and "75%" in c.detail and c.data["iogpu.wired_limit_mb"] == "0"
    c = d.gpu_limit(m4(), sc)  # MLX gave no Metal value: the estimate
    assert c.status == d.WARN and "estimated" in c.detail
    c = d.gpu_limit(m4(working_set_bytes=4 * GIB), sc)
    assert c.status == d.WARN and "iogpu.wired_limit_mb" in (c.fix or "")
    assert d.gpu_limit(cpu_profile("x", GIB, 1), {}).status == d.SKIP


def test_rosetta():
    assert d.rosetta(m4(), "darwin", "arm64").status == d.PASS
    translated = profile_from_mac(M4_SYSCTL.replace("proc_translated: 0", "proc_translated: 1"))
    c = d.rosetta(translated, "darwin", "x86_64")
    assert c.status == d.FAIL and "arm64 Python" in (c.fix or "")
    assert d.rosetta(cpu_profile("x", GIB, 1), "linux", "x86_64").status == d.SKIP


def test_python_version():
    assert d.python((3, 11, 7), "/x/python", "CPython").status == d.PASS
    assert d.python((3, 10, 1), "/x/python", "CPython").status == d.FAIL


REQUIRES = ['typer<0.29,>=0.12', 'mlx<0.40,>=0.32; sys_platform == "darwin"',
            'mlx[cpu]<0.40,>=0.32; sys_platform != "darwin"', 'mlx-lm<0.40,>=0.31', 'vllm-mlx<0.7,>=0.6',
            'litellm[proxy]!=1.82.7,!=1.82.8,<2,>=1.83.7', 'pytest>=8; extra == "dev"']


def test_requirements_follow_the_markers():
    mac, linux = d.requirements(REQUIRES, "darwin"), d.requirements(REQUIRES, "linux")
    assert mac["mlx"] == linux["mlx"] == "<0.40,>=0.32"
    assert "pytest" not in mac and linux["litellm"] == "!=1.82.7,!=1.82.8,<2,>=1.83.7"
    assert d.satisfies("1.108.7", linux["litellm"]) and not d.satisfies("1.82.7", linux["litellm"])
    assert not d.satisfies("0.40.0", "<0.40,>=0.32") and d.satisfies("0.32.4.dev1", ">=0.32")


VERSIONS = {"mlx": "0.32.4", "mlx-metal": "0.32.4", "mlx-cpu": "0.32.4", "mlx-lm": "0.31.3",
            "vllm-mlx": "0.6.0", "litellm": "1.108.7"}
CMDS = {"vllm-mlx": "/v/bin/vllm-mlx", "litellm": "/v/bin/litellm"}


def test_packages():
    req = d.requirements(REQUIRES, "darwin")
    c = d.packages(VERSIONS, req, "darwin", CMDS)
    assert c.status == d.PASS and "mlx-metal 0.32.4" in c.detail
    linux = d.packages(VERSIONS, req, "linux", CMDS).detail
    assert "mlx-metal" not in linux and "mlx-cpu 0.32.4" in linux
    assert "mlx-cpu" not in d.packages({**VERSIONS, "mlx-cpu": None}, req, "darwin", CMDS).detail
    c = d.packages({**VERSIONS, "mlx-metal": None}, req, "darwin", CMDS)
    assert c.status == d.FAIL and "missing: mlx-metal" in c.detail and "reinstall" in (c.fix or "")
    c = d.packages(VERSIONS, req, "linux", {**CMDS, "litellm": None})
    assert c.status == d.FAIL and "the litellm command" in c.detail
    c = d.packages({**VERSIONS, "vllm-mlx": "0.7.1"}, req, "linux", CMDS)
    assert c.status == d.WARN and "vllm-mlx 0.7.1 (wants <0.7,>=0.6)" in c.detail
    c = d.packages({**VERSIONS, "mlx-metal": "0.31.0"}, req, "darwin", CMDS)
    assert c.status == d.WARN and "mlx-metal 0.31.0 differs from mlx 0.32.4" in c.detail


def test_mlx_backend():
    metal = {"imported": True, "metal": True, "default_device": "Device(gpu, 0)",
             "device_info": {"device_name": "Apple M4"}}
    assert d.mlx_backend("darwin", metal).status == d.PASS
    c = d.mlx_backend("darwin", {**metal, "metal": False})
    assert c.status == d.FAIL and "Metal is not available" in c.detail
    c = d.mlx_backend("linux", {"imported": False, "error": "ImportError: libmlx.so"})
    assert c.status == d.FAIL and "mlx[cpu]" in (c.fix or "")
    cpu = {"imported": True, "metal": False, "default_device": "cpu"}
    assert d.mlx_backend("linux", cpu).status == d.PASS


@pytest.mark.parametrize("free, status",
                         [(None, d.WARN), (GIB, d.FAIL), (10 * GIB, d.WARN), (50 * GIB, d.PASS)])
def test_disk(free, status):
    assert d.disk("disk-models", "disk", "/x", free, d.HF_CACHE_WARN, d.HF_CACHE_FAIL).status == status


def test_ports():
    free = ds.PortFact("gateway", 4000, True)
    ours = ds.PortFact("standard", 8100, False, ours=True)
    c = ds.ports([free, ours])
    assert c.status == d.PASS and "8100 standard (ours)" in c.detail and "4000 gateway (free)" in c.detail
    c = ds.ports([free, ds.PortFact("fast", 8101, False, holder="nginx (pid 12)")])
    assert c.status == d.FAIL and "8101 (fast) is held by nginx (pid 12)" in c.detail


def test_state_files():
    ok = ds.FileFact("config.yaml", "/h/config.yaml", True)
    absent = ds.FileFact("stack.yaml", "/h/stack.yaml", False)
    assert ds.state_files([ok, absent]).detail == "valid: config.yaml"
    bad = ds.FileFact("stack.yaml", "/h/stack.yaml", True, "/h/stack.yaml line 3: bad", "fix it")
    c = ds.state_files([ok, bad])
    assert c.status == d.FAIL and "line 3" in c.detail and c.fix == "fix it"


def test_secret_permissions():
    assert ds.secrets("/h/secrets", None, {}).status == d.PASS
    assert ds.secrets("/h/secrets", 0o700, {"gateway-key": 0o600}).status == d.PASS
    c = ds.secrets("/h/secrets", 0o755, {"gateway-key": 0o644})
    assert c.status == d.FAIL and "/h/secrets is 755" in c.detail and "gateway-key is 644" in c.detail
    assert c.fix == "chmod 700 /h/secrets && chmod 600 /h/secrets/*"


def test_unit_program_of_rendered_units():
    spec = service_units.UnitSpec(program=("/opt/tool/bin/mlx-stack", "watch", "--standby"), home=Path("/h"))
    assert ds.unit_program("launchd", service_units.render_plist(spec).decode()) == "/opt/tool/bin/mlx-stack"
    assert ds.unit_program("systemd", service_units.render_systemd(spec)) == "/opt/tool/bin/mlx-stack"
    assert ds.unit_program("launchd", "<plist>truncated") is None


def login(**kw):
    base = {"kind": "launchd", "unit_file": "/u/agent.plist", "installed": True, "loaded": True,
            "running": True, "pid": 42, "last_exit": "0", "unit_program": "/v/bin/mlx-stack",
            "this_program": "/v/bin/mlx-stack"}
    return ds.login_service(ds.LoginFact(**{**base, **kw}))


def test_login_service_states():
    assert login().status == d.PASS and "last exit 0" in login().detail
    assert login(installed=False, loaded=False).status == d.PASS
    assert login(installed=False).status == d.WARN  # loaded without a file
    assert login(loaded=False).status == d.WARN
    c = login(running=False, last_exit="78: EX_CONFIG")
    assert c.status == d.WARN and "78: EX_CONFIG" in c.detail
    c = login(program_exists=False)
    assert c.status == d.FAIL and "no longer exists" in c.detail and "mlx-stack install" in (c.fix or "")
    c = login(unit_program="/old/checkout/.venv/bin/mlx-stack")
    assert c.status == d.WARN and "another installation" in c.detail
    assert ds.login_service(ds.LoginFact("systemd", "", unsupported="no systemd")).status == d.SKIP


@pytest.mark.parametrize("state, status", [("healthy", d.PASS), ("stopped", d.PASS), ("sleeping", d.PASS),
                                           ("degraded", d.WARN),
                                           ("down", d.FAIL), ("crashed", d.FAIL), ("flapping", d.FAIL)])
def test_service_states(state, status):
    c = ds.service({"name": "fast", "state": state, "port": 8101, "pid": 7, "latency_ms": 12.0}, 2 * GIB)
    assert c.status == status and c.id == "service:fast"
    assert "2.00 GB resident" in c.detail and c.data["rss_bytes"] == 2 * GIB
    if status == d.FAIL:
        assert "mlx-stack logs fast" in (c.fix or "")


def test_service_detail_never_quotes_log_lines():
    crashed = {"name": "fast", "state": "crashed", "port": 8101,
               "detail": "process gone; last log line: user said: my secret plan"}
    c = ds.service(crashed, None)
    assert "secret plan" not in c.detail and "secret plan" not in str(c.data)
    assert "process gone (its log: `mlx-stack logs fast`)" in c.detail
    flapping = {"name": "fast", "state": "flapping", "port": 8101,
                "detail": "5 restarts in 600 s; last log: a prompt | another"}
    c = ds.service(flapping, None)
    assert "a prompt" not in str(c.as_dict()) and "5 restarts in 600 s" in c.detail
