"""`config set routing.*` and the routing part of `status`, without starting servers."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import stack_store
from mlx_stack.services.gateway_config import write_gateway_config
from mlx_stack.system import ports


def _write_stack(home: Paths, tmp_path: Path) -> Stack:
    model = tmp_path / "model-without-window"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 4096}))
    stack = Stack(
        (Tier("standard", "org/big", "/models/big", ports.free_port(), context_window=32768),
         Tier("fast", "org/small", str(model), ports.free_port()),
         Tier("longctx", "org/long", "/models/long", ports.free_port(), context_window=131072)),
        ("standard", "fast", "longctx"),
        Gateway("127.0.0.1", ports.free_port()),
    )
    stack_store.save(home, stack)
    return stack


def test_set_and_unset_a_rule(run, isolated_home: Paths, tmp_path: Path) -> None:
    _write_stack(isolated_home, tmp_path)
    r = run("config", "set", "routing.tool-tier", "fast")
    assert r.exit_code == 0, r.stderr
    assert "routing.tool-tier = fast" in r.stderr
    assert yaml.safe_load(isolated_home.stack_file.read_text())["routing"] == {"tool_tier": "fast"}
    assert run("config", "set", "routing.output-reserve-tokens", "1024").exit_code == 0
    assert stack_store.load(isolated_home).routing.output_reserve_tokens == 1024  # type: ignore[union-attr]
    r = run("config", "unset", "routing.tool-tier")
    assert r.exit_code == 0 and "reset to its default (standard)" in r.stderr
    assert yaml.safe_load(isolated_home.stack_file.read_text())["routing"] == {"output_reserve_tokens": 1024}
    assert run("config", "set", "routing.long-tier", "none").exit_code == 0
    assert stack_store.load(isolated_home).routing.long_tier is None  # type: ignore[union-attr]
    assert run("config", "set", "routing.long-prompt-tokens", "20000").exit_code == 0
    assert stack_store.load(isolated_home).routing.long_prompt_tokens == 20000  # type: ignore[union-attr]


def test_bad_rules_are_usage_errors(run, isolated_home: Paths, tmp_path: Path) -> None:
    _write_stack(isolated_home, tmp_path)
    r = run("config", "set", "routing.tool-tier", "huge")
    assert r.exit_code == 2 and "'huge' is not a tier of this stack" in r.stderr
    r = run("config", "set", "routing.output-reserve-tokens", "lots")
    assert r.exit_code == 2 and "whole number" in r.stderr
    r = run("config", "set", "routing.speed", "1")
    assert r.exit_code == 4 and "unknown config key 'routing.speed'" in r.stderr  # as for any unknown key
    assert "routing" not in yaml.safe_load(isolated_home.stack_file.read_text())


def test_no_stack_yet(run) -> None:
    r = run("config", "set", "routing.tool-tier", "fast")
    assert r.exit_code == 4 and "no stack configured" in r.stderr


def test_gateway_files_follow_a_change(run, isolated_home: Paths, tmp_path: Path) -> None:
    stack = _write_stack(isolated_home, tmp_path)
    write_gateway_config(isolated_home, stack, cloud_port=None)
    doc = json.loads(isolated_home.routes_file.read_text())
    assert doc["rules"]["tool_tier"] == "standard"
    assert {t["name"]: t["context_window"] for t in doc["tiers"]} == {
        "standard": 32768, "fast": 4096, "longctx": 131072}  # fast: from the model's config.json
    assert run("config", "set", "routing.tool-tier", "fast").exit_code == 0
    doc = json.loads(isolated_home.routes_file.read_text())
    assert doc["rules"]["tool_tier"] == "fast"
    assert doc["fallback_order"] == ["standard", "fast", "longctx"]
    assert doc["cloud"] is None  # no cloud key stored: LiteLLM does not run
    assert {t["name"]: t["url"] for t in doc["tiers"]}["fast"] == f"http://127.0.0.1:{stack.tier('fast').port}"
    assert not (isolated_home.generated_dir / "litellm.yaml").exists()


def test_rules_that_route_everything_away_are_refused(run, isolated_home: Paths, tmp_path: Path) -> None:
    _write_stack(isolated_home, tmp_path)  # the smallest window: fast, 4096
    r = run("config", "set", "routing.output-reserve-tokens", "100000")
    assert r.exit_code == 2, r.stderr
    assert "leaves too little room" in r.stderr and "tier fast's 4096-token window" in r.stderr
    r = run("config", "set", "routing.long-prompt-tokens", "200000")
    assert r.exit_code == 2 and "not below the long tier longctx's prompt limit" in r.stderr
    assert "routing" not in yaml.safe_load(isolated_home.stack_file.read_text())
    assert run("config", "set", "routing.output-reserve-tokens", "2000").exit_code == 0


def test_status_shows_rules_and_windows(run, isolated_home: Paths, tmp_path: Path) -> None:
    _write_stack(isolated_home, tmp_path)
    r = run("status")
    assert r.exit_code == 3, r.stderr  # nothing runs
    assert "with tools -> standard" in r.stdout and "otherwise -> standard" in r.stdout
    assert "-> longctx" in r.stdout and "the front door is not running" in r.stdout
    data = json.loads(run("status", "--json").stdout)["routing"]
    assert data["rules"]["long_tier"] == "longctx" and data["counts"] is None
    assert {t["name"]: t["prompt_limit"] for t in data["tiers"]} == {
        "standard": 32768 - 512, "fast": 4096 - 512, "longctx": 131072 - 512}
