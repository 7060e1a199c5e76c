from __future__ import annotations

import json


def test_status_shows_hardware_without_a_stack(run):
    r = run("status")
    assert r.exit_code == 4, r.stderr  # nothing configured
    assert "memory" in r.stdout and "bandwidth" in r.stdout
    assert "CPU profile" in r.stdout or "gpu cores" in r.stdout


def test_status_json_has_hardware(run):
    r = run("status", "--json")
    assert r.exit_code == 4, r.stderr  # nothing configured
    hw = json.loads(r.stdout)["hardware"]
    assert hw["memory_bytes"] > 0
    assert {"chip", "gpu_cores", "bandwidth_gbs", "gpu_limit_bytes", "rosetta", "kind"} <= set(hw)
