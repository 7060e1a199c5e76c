"""`config set/unset alias.PATTERN` and `default-tier`: stack.yaml, the routes file, errors."""

from __future__ import annotations

import json

import yaml

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import stack_store
from mlx_stack.services.gateway_config import write_gateway_config
from mlx_stack.system import ports


def _write_stack(home: Paths) -> Stack:
    stack = Stack(
        (Tier("standard", "org/big", "/models/big", ports.free_port(), context_window=32768),
         Tier("fast", "org/small", "/models/small", ports.free_port(), context_window=8192)),
        ("standard", "fast"),
        Gateway("127.0.0.1", ports.free_port()),
    )
    stack_store.save(home, stack)
    return stack


def _yaml(home: Paths) -> dict:
    return yaml.safe_load(home.stack_file.read_text())


def test_set_and_unset_an_alias(run, isolated_home: Paths) -> None:
    stack = _write_stack(isolated_home)
    write_gateway_config(isolated_home, stack, cloud_port=None)
    r = run("config", "set", "alias.my-coder*", "fast")
    assert r.exit_code == 0, r.stderr
    assert "alias.my-coder* = fast" in r.stderr
    assert _yaml(isolated_home)["aliases"] == {"my-coder*": "fast"}
    doc = json.loads(isolated_home.routes_file.read_text())  # a running front door follows
    assert doc["aliases"][0] == {"pattern": "my-coder*", "tier": "fast"}
    assert run("config", "set", "alias.claude-*opus*", "fast").exit_code == 0
    assert list(_yaml(isolated_home)["aliases"]) == ["my-coder*", "claude-*opus*"]
    r = run("config", "unset", "alias.claude-*opus*")
    assert r.exit_code == 0 and "built-in alias claude-*opus*" in r.stderr and "(standard)" in r.stderr
    assert run("config", "unset", "alias.my-coder*").exit_code == 0
    assert "aliases" not in _yaml(isolated_home)


def test_default_tier(run, isolated_home: Paths) -> None:
    _write_stack(isolated_home)
    r = run("config", "set", "default-tier", "fast")
    assert r.exit_code == 0 and "default-tier = fast" in r.stderr
    assert _yaml(isolated_home)["default_tier"] == "fast"
    r = run("config", "unset", "default-tier")
    assert r.exit_code == 0 and "default_tier" not in _yaml(isolated_home)


def test_bad_aliases_are_one_line_errors(run, isolated_home: Paths) -> None:
    _write_stack(isolated_home)
    before = isolated_home.stack_file.read_text()
    for args, code, text in (
        (("alias.x*", "huge"), 2, "'huge' is not a tier of this stack"),
        (("alias.", "fast"), 2, "the pattern is empty"),
        (("alias.a b", "fast"), 2, "space or a control character"),
        (("alias.a\x07b", "fast"), 2, "space or a control character"),
        (("default-tier", "huge"), 2, "'huge' is not a tier"),
    ):
        r = run("config", "set", *args)
        assert r.exit_code == code, (args, r.stderr)
        assert text in r.stderr and r.stderr.count("error:") == 1 and "Traceback" not in r.stderr
    r = run("config", "unset", "alias.never-set")
    assert r.exit_code == 4 and "no alias 'never-set'" in r.stderr
    assert isolated_home.stack_file.read_text() == before


def test_no_stack_yet(run) -> None:
    r = run("config", "set", "alias.x*", "fast")
    assert r.exit_code == 4 and "no stack configured" in r.stderr


def test_a_hand_written_alias_to_a_missing_tier_names_the_field(run, isolated_home: Paths) -> None:
    _write_stack(isolated_home)
    data = _yaml(isolated_home)
    data["aliases"] = {"x*": "gone"}
    isolated_home.stack_file.write_text(yaml.safe_dump(data))
    r = run("status")
    assert r.exit_code == 3 and "aliases.x*" in r.stderr and "'gone' is not a tier" in r.stderr
