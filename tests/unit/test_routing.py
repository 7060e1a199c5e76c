"""core.routing: the `auto` decision, the estimate, the routing: section of stack.yaml."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from mlx_stack.core.routing import (
    RoutingRules,
    context_window_fallbacks,
    decide,
    default_rules,
    dump_routing,
    estimate_tokens,
    fit_to_tiers,
    has_tools,
    is_borderline,
    parse_routing,
)
from mlx_stack.errors import StateError

TIERS = ["standard", "fast", "longctx"]
WINDOWS = {"standard": 2048, "fast": 2048, "longctx": 8192}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def _chat(text: str, **extra: object) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}


def test_defaults_follow_the_tiers_and_intent() -> None:
    assert default_rules(TIERS) == RoutingRules("standard", "standard", "longctx")
    assert default_rules(TIERS, intent="agent-fleet").tool_tier == "fast"
    assert default_rules(["fast"], intent="agent-fleet") == RoutingRules("fast", "fast", None)
    assert default_rules(["solo", "other"]).default_tier == "solo"


def test_plain_tools_and_long_prompts() -> None:
    rules = default_rules(TIERS, intent="agent-fleet")
    assert decide(_chat("hi"), rules, WINDOWS).tier == "standard"
    assert decide(_chat("hi"), rules, WINDOWS).reason == "default"
    tools = decide(_chat("hi", tools=TOOLS), rules, WINDOWS)
    assert (tools.tier, tools.reason) == ("fast", "tools")
    assert decide(_chat("hi", tools=TOOLS, tool_choice="none"), rules, WINDOWS).tier == "standard"
    long = decide(_chat("word " * 4000), rules, WINDOWS)
    assert (long.tier, long.reason) == ("longctx", "long-prompt")
    # a long prompt with tools: too long for the tool tier, so the long tier
    assert decide(_chat("word " * 4000, tools=TOOLS), rules, WINDOWS).tier == "longctx"


def test_window_minus_reserve_is_the_limit_and_a_real_count_wins() -> None:
    rules = default_rules(TIERS)
    assert decide(_chat("x"), rules, WINDOWS, tokens=2048 - 512).tier == "standard"
    assert decide(_chat("x"), rules, WINDOWS, tokens=2048 - 511).tier == "longctx"
    assert decide(_chat("x"), rules, {"standard": None}, tokens=10**6).tier == "standard"  # unknown window
    explicit = RoutingRules("standard", "standard", "longctx", long_prompt_tokens=100)
    assert decide(_chat("x"), explicit, WINDOWS, tokens=101).tier == "longctx"


def test_borderline_only_near_a_limit() -> None:
    rules = default_rules(TIERS)
    assert not is_borderline(_chat("hi"), rules, WINDOWS)
    assert is_borderline(_chat("x" * 1536 * 4), rules, WINDOWS)
    assert not is_borderline(_chat("x" * 1536 * 40), rules, WINDOWS)


def test_estimate_reads_openai_and_anthropic_shapes() -> None:
    base = estimate_tokens({"messages": []})
    assert estimate_tokens(_chat("a" * 4000)) >= 1000
    anthropic = {"system": [{"type": "text", "text": "s" * 4000}],
                 "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert estimate_tokens(anthropic) >= 1000
    # CJK: about one token per character
    assert estimate_tokens(_chat("漢" * 1000)) >= 1000
    # images are not text tokens
    image = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100000}}]}]}
    assert estimate_tokens(image) < base + 50
    assert estimate_tokens({"messages": [], "tools": TOOLS}) > base
    responses = {"input": [{"role": "user", "content": "r" * 4000}], "instructions": "i" * 4000}
    assert estimate_tokens(responses) >= 2000


def test_estimate_is_fast() -> None:
    request = _chat("hello " * 50, tools=TOOLS)
    rules = default_rules(TIERS)
    start = time.perf_counter()
    for _ in range(1000):
        decide(request, rules, WINDOWS)
    assert (time.perf_counter() - start) / 1000 < 0.0005


def test_has_tools() -> None:
    assert not has_tools({"tools": []})
    assert has_tools({"functions": [{"name": "f"}]})
    assert not has_tools({"tools": TOOLS, "tool_choice": {"type": "none"}})


def test_parse_routing_round_trip_and_errors() -> None:
    rules = parse_routing({"tool_tier": "fast", "output_reserve_tokens": 256, "chars_per_token": 3}, TIERS)
    assert rules.tool_tier == "fast" and rules.output_reserve_tokens == 256 and rules.chars_per_token == 3.0
    assert dump_routing(rules, TIERS) == {"tool_tier": "fast", "output_reserve_tokens": 256,
                                          "chars_per_token": 3.0}
    assert parse_routing(dump_routing(rules, TIERS), TIERS) == rules
    assert parse_routing(None, TIERS) == default_rules(TIERS)
    assert fit_to_tiers(rules, ["standard"]) == RoutingRules("standard", "standard", None, 256, 3.0)
    assert parse_routing({"long_tier": None}, TIERS).long_tier is None
    for bad, field in (({"tool_tier": "nope"}, "tool_tier"), ({"speed": 1}, "speed"),
                       ({"output_reserve_tokens": -1}, "output_reserve_tokens"),
                       ({"chars_per_token": True}, "chars_per_token"), ([], "")):
        with pytest.raises(StateError, match=f"routing.{field}"):
            parse_routing(bad, TIERS)


def test_context_window_fallbacks_go_long_then_cloud() -> None:
    rules = default_rules(TIERS)
    assert context_window_fallbacks(TIERS, WINDOWS, rules) == [
        {"standard": ["longctx"]}, {"fast": ["longctx"]}]
    assert context_window_fallbacks(TIERS, WINDOWS, rules, cloud="cloud") == [
        {"standard": ["longctx", "cloud"]}, {"fast": ["longctx", "cloud"]}, {"longctx": ["cloud"]}]
    assert context_window_fallbacks(TIERS, {"standard": 2048}, rules) == [{"standard": ["longctx"]}]


def test_stack_yaml_routing_section_round_trip() -> None:
    from mlx_stack.core.stack import dump_stack, parse_stack

    data = {"schema": 1, "tiers": [{"name": n, "model": f"org/{n}", "path": f"/m/{n}", "port": 8100 + i}
                                   for i, n in enumerate(TIERS)]}
    assert parse_stack(data).routing is None
    assert "routing" not in dump_stack(parse_stack(data))
    stack = parse_stack({**data, "routing": {"tool_tier": "fast", "long_prompt_tokens": 5000}})
    assert stack.routing == RoutingRules("standard", "fast", "longctx", long_prompt_tokens=5000)
    assert parse_stack(dump_stack(stack)) == stack
    with pytest.raises(StateError, match=r"routing\.tool_tier"):
        parse_stack({**data, "routing": {"tool_tier": "gone"}})
    # a tier removed later: the rule falls back to its default instead of breaking stack.yaml
    smaller = replace(stack, tiers=stack.tiers[:1], fallback_order=("standard",))
    assert dump_stack(smaller)["routing"] == {"long_prompt_tokens": 5000}
    assert parse_stack(dump_stack(smaller)).routing.tool_tier == "standard"  # type: ignore[union-attr]


def test_setup_for_an_agent_fleet_sends_tool_calls_to_fast(isolated_home) -> None:
    from mlx_stack.core.stack import Tier
    from mlx_stack.core.stack_change import SetupFlags
    from mlx_stack.services import setup

    tiers = [Tier(n, f"org/{n}", f"/m/{n}", 0) for n in TIERS]
    fleet = setup._build(isolated_home, None, tiers, SetupFlags(), 4000, "agent-fleet")
    assert fleet.routing is not None and fleet.routing.tool_tier == "fast"
    assert setup._build(isolated_home, None, tiers, SetupFlags(), 4000, "balanced").routing is None
