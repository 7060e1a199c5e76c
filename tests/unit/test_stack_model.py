from __future__ import annotations

import copy
from typing import Any

import pytest

from mlx_stack.core.stack import Cloud, Stack, Tier, dump_stack, parse_stack
from mlx_stack.errors import NotFoundError, StateError


def _data() -> dict[str, Any]:
    return {
        "schema": 1,
        "gateway": {"host": "127.0.0.1", "port": 4000},
        "fallback_order": ["standard", "fast", "longctx"],
        "tiers": [
            {"name": "standard", "model": "org/big", "path": "/m/big", "port": 8001,
             "tool_call_parser": "hermes", "context_window": 32768},
            {"name": "fast", "model": "org/small", "path": "/m/small", "port": 8002,
             "reasoning_parser": "qwen3"},
            {"name": "longctx", "model": "org/long", "path": "/m/long", "port": 8003,
             "extra_args": ["--max-num-seqs", "4"]},
        ],
    }


def test_round_trip() -> None:
    stack = parse_stack(_data())
    assert stack.tier_names == ["standard", "fast", "longctx"]
    assert stack.tier("fast").reasoning_parser == "qwen3"
    assert stack.tier("longctx").extra_args == ("--max-num-seqs", "4")
    assert parse_stack(dump_stack(stack)) == stack
    assert dump_stack(stack) == _data()


def test_services_are_the_tiers_then_the_gateway() -> None:
    stack = parse_stack(_data())
    assert stack.services == ["standard", "fast", "longctx", "gateway"]


def test_unknown_tier_names_the_known_ones() -> None:
    with pytest.raises(NotFoundError) as err:
        parse_stack(_data()).tier("huge")
    assert "huge" in err.value.message
    assert "standard, fast, longctx" in (err.value.hint or "")


def _broken(change) -> StateError:  # type: ignore[no-untyped-def]
    data = copy.deepcopy(_data())
    change(data)
    with pytest.raises(StateError) as err:
        parse_stack(data, "/h/stack.yaml")
    assert err.value.exit_code == 3
    assert err.value.message.startswith("/h/stack.yaml")
    return err.value


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["tiers"][1].update(port=80), "tiers[1].port"),
        (lambda d: d["tiers"][1].update(port="8002"), "tiers[1].port"),
        (lambda d: d["tiers"][1].update(port=True), "tiers[1].port"),
        (lambda d: d["tiers"][2].update(port=8001), "tiers[2].port"),
        (lambda d: d["tiers"][0].pop("path"), "tiers[0].path"),
        (lambda d: d["tiers"][0].update(name="Big Tier"), "tiers[0].name"),
        (lambda d: d["tiers"][0].update(name="gateway"), "tiers[0].name"),
        (lambda d: d["tiers"][1].update(name="standard"), "tiers[1].name"),
        (lambda d: d["tiers"][0].update(colour="red"), "tiers[0].colour"),
        (lambda d: d["tiers"][0].update(context_window=0), "tiers[0].context_window"),
        (lambda d: d["fallback_order"].append("huge"), "fallback_order[3]"),
        (lambda d: d["gateway"].update(port=8001), "tiers[0].port"),
        (lambda d: d.update(tiers=[]), "tiers"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
def test_bad_fields_are_named(change, field: str) -> None:  # type: ignore[no-untyped-def]
    assert f": {field}:" in _broken(change).message


def test_unknown_schema() -> None:
    err = _broken(lambda d: d.update(schema=2))
    assert "schema 2" in err.message


def test_not_a_mapping() -> None:
    with pytest.raises(StateError):
        parse_stack(["a"], "stack.yaml")


def test_with_tier_replaces_or_appends() -> None:
    stack = parse_stack(_data())
    extra = Tier("extra", "org/x", "/m/x", 8009)
    grown = stack.with_tier(extra)
    assert grown.tier_names[-1] == "extra"
    assert grown.fallback_order[-1] == "extra"
    moved = stack.with_tier(Tier("fast", "org/small", "/m/small", 8010))
    assert moved.tier("fast").port == 8010 and moved.tier_names == stack.tier_names


def test_cloud_defaults_are_not_written() -> None:
    stack = parse_stack(_data())
    assert "cloud" not in dump_stack(stack)
    local = Stack(stack.tiers, stack.fallback_order, stack.gateway, Cloud(base_url="http://127.0.0.1:9/v1"))
    assert parse_stack(dump_stack(local)).cloud.base_url == "http://127.0.0.1:9/v1"
