"""Redaction of the doctor report, and a report as a hardware sample."""

from __future__ import annotations

import json

import pytest

from mlx_stack.core import doctor_report as rep
from mlx_stack.core.doctor import PASS, Check

KEY = "sk-mlxstack-9f8e7d6c5b4a3928171605f4e3d2c1b0"


def test_stored_values_key_shapes_and_home_are_redacted():
    text = (f"key {KEY} or sk-or-v1-0123456789abcdef hf_abcdefghijklmnopqrstu "
            "Authorization: Bearer abc.def-ghi_jkl and /home/alice/.mlx-stack but /home/alice2 stays")
    out = rep.redact_text(text, ["s3cret-value", KEY], "/home/alice")
    for leaked in (KEY, "sk-or-v1-0123", "hf_abcdefghij", "abc.def-ghi_jkl", "/home/alice/"):
        assert leaked not in out
    assert "~/.mlx-stack" in out and "/home/alice2" in out
    assert rep.redact_text("no s3cret-value here", ["s3cret-value"], "/h") == f"no {rep.REDACTED} here"


def test_redact_walks_keys_values_and_lists():
    data = {"a": [KEY, {"/home/bob/x": 3}], "n": 1, "none": None}
    assert rep.redact(data, [KEY], "/home/bob") == {"a": [rep.REDACTED, {"~/x": 3}], "n": 1, "none": None}


def test_system_profiler_identifiers_are_scrubbed():
    sp = '{"SPHardwareDataType":[{"chip_type":"Apple M4","serial_number":"C02X","platform_UUID":"U-1"}]}'
    out = json.loads(rep.scrub_sp_json(sp))["SPHardwareDataType"][0]
    assert out == {"chip_type": "Apple M4", "serial_number": rep.REDACTED, "platform_UUID": rep.REDACTED}
    assert rep.scrub_sp_json("not json") == "not json"
    ioreg = '"IOPlatformSerialNumber" = "C02X"\n"gpu-core-count" = 10'
    assert "C02X" not in rep.redact_text(ioreg, [], "/h") and "gpu-core-count" in ioreg


def test_build_and_read_back_a_sample():
    checks = [Check("hardware", "hardware", PASS, "M4", data={"chip": "M4", "gpu_cores": 10})]
    raw = {"mac": {"sysctl": "machdep.cpu.brand_string: Apple M4\n", "ioreg": "", "sp_displays": "",
                   "sp_hardware": '{"SPHardwareDataType":[{"serial_number":"C02X"}]}',
                   "working_set_bytes": 7}}
    doc = rep.build(checks, meta={"mlx_stack_version": "0"}, raw=raw, secrets=[], home="/home/u")
    assert doc["format"] == rep.FORMAT and doc["exit_code"] == 0 and doc["summary"]["PASS"] == 1
    assert "C02X" not in json.dumps(doc)
    sample = rep.hardware_sample(json.loads(json.dumps(doc)))
    assert sample["mac"]["sysctl_text"].startswith("machdep") and sample["mac"]["working_set_bytes"] == 7
    assert sample["profile"] == {"chip": "M4", "gpu_cores": 10}
    with pytest.raises(ValueError):
        rep.hardware_sample({"something": "else"})
