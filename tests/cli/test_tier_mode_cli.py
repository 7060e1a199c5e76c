"""`config set tiers.NAME.mode|idle-unload` and `setup --on-demand` flag errors (no servers)."""

from __future__ import annotations

import json

import yaml

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import stack_store
from mlx_stack.services.gateway_config import write_gateway_config


def _write_stack(home: Paths) -> Stack:
    stack = Stack((Tier("standard", "org/big", "/m/big", 18101), Tier("coder", "org/code", "/m/code", 18102)),
                  ("standard", "coder"), Gateway("127.0.0.1", 18100))
    stack_store.save(home, stack)
    return stack


def test_set_a_tier_on_demand_and_back(run, isolated_home: Paths) -> None:
    stack = _write_stack(isolated_home)
    write_gateway_config(isolated_home, stack, cloud_port=None)  # as a running front door would have it
    r = run("config", "set", "tiers.coder.mode", "on-demand")
    assert r.exit_code == 0, r.stderr
    assert "tiers.coder.mode = on-demand" in r.stderr and "after 10m idle" in r.stderr
    r = run("config", "set", "tiers.coder.idle-unload", "30s")
    assert r.exit_code == 0 and "tiers.coder.idle-unload = 30s" in r.stderr
    tiers = yaml.safe_load(isolated_home.stack_file.read_text())["tiers"]
    assert tiers[1]["mode"] == "on-demand" and tiers[1]["idle-unload"] == "30s"
    routes = json.loads(isolated_home.routes_file.read_text())
    assert routes["tiers"][1]["on_demand"]["idle_unload_s"] == 30  # the front door follows
    r = run("config", "unset", "tiers.coder.idle-unload")
    assert r.exit_code == 0 and "(10m)" in r.stderr
    r = run("config", "unset", "tiers.coder.mode")
    assert r.exit_code == 0 and "(resident)" in r.stderr
    assert not stack_store.load(isolated_home).tier("coder").on_demand


def test_bad_tier_settings_are_usage_errors(run, isolated_home: Paths) -> None:
    _write_stack(isolated_home)
    before = isolated_home.stack_file.read_text()
    for args, words in ((("tiers.coder.mode", "lazy"), "resident or on-demand"),
                        (("tiers.nope.mode", "on-demand"), "unknown tier 'nope'"),
                        (("tiers.coder.speed", "1"), "unknown key"),
                        (("tiers.coder.idle-unload", "5m"), "tier coder is resident")):
        r = run("config", "set", *args)
        assert r.exit_code == 2, (args, r.stderr)
        assert words in r.stderr and "Traceback" not in r.stderr
    assert run("config", "set", "tiers.coder.mode", "on-demand").exit_code == 0
    r = run("config", "set", "tiers.coder.idle-unload", "soon")
    assert r.exit_code == 2 and "30s, 10m or 2h" in r.stderr
    assert before != isolated_home.stack_file.read_text()  # only the valid change landed


def test_setup_on_demand_flag_errors(run, isolated_home: Paths) -> None:
    r = run("setup", "--on-demand")
    assert r.exit_code == 2 and "apply to the tiers of --add" in r.stderr
    r = run("setup", "--add", "m", "--idle-unload", "5m")
    assert r.exit_code == 2 and "--idle-unload needs --on-demand" in r.stderr


def test_setup_add_on_demand_writes_the_mode(run, isolated_home: Paths, tmp_path) -> None:
    from mlx_stack.services.demo_models import build_random_model

    one, two = build_random_model(tmp_path / "one", seed=1), build_random_model(tmp_path / "two", seed=2)
    assert run("setup", "--model", str(one), "--no-start").exit_code == 0
    r = run("setup", "--add", str(two), "--as", "coder", "--on-demand", "--idle-unload", "30s", "--no-start")
    assert r.exit_code == 0, r.stderr
    stack = stack_store.load(isolated_home)
    assert stack.tier("coder").on_demand and stack.tier("coder").idle_unload_s == 30
    assert not stack.tier("standard").on_demand
    plans = {t.name: t.serving.planned_mb for t in stack.tiers if t.serving is not None}
    assert stack.memory_budget_mb is not None and stack.memory_budget_mb >= plans["standard"] + plans["coder"]
    r = run("up", "--dry-run")
    assert r.exit_code == 0 and "coder" not in r.stdout + r.stderr  # up leaves it asleep
