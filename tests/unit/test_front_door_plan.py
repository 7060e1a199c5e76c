"""core.front_door: the routes document, the order of upstreams, the shape checks, the rules check."""

from __future__ import annotations

import pytest

from mlx_stack.core.front_door import (
    UnknownModel,
    Upstream,
    check_rules,
    is_near_a_limit,
    parse_routes,
    plan,
    shape_problem,
)
from mlx_stack.core.gateway_config import render_routes
from mlx_stack.core.metrics_text import render, summary
from mlx_stack.core.routing import RoutingRules, default_rules

TIERS = [Upstream("standard", "org/std", "http://127.0.0.1:1", 2048, "/m/std"),
         Upstream("fast", "org/fast", "http://127.0.0.1:2", 2048),
         Upstream("longctx", "org/long", "http://127.0.0.1:3", 8192)]
CLOUD = Upstream("cloud", "vendor/model", "http://127.0.0.1:9")


def _routes(cloud: bool = False, rules: RoutingRules | None = None):
    rules = rules or default_rules([t.name for t in TIERS])
    doc = render_routes(TIERS, ["standard", "fast", "longctx"], rules, CLOUD if cloud else None)
    return parse_routes(doc)


def _chat(model: str, text: str = "hi", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_the_document_round_trips() -> None:
    routes = _routes(cloud=True)
    assert list(routes.tiers) == ["standard", "fast", "longctx"]
    assert routes.tiers["standard"].tokenizer == "/m/std"
    assert routes.model_ids == ["standard", "fast", "longctx", "auto", "cloud"]
    with pytest.raises(ValueError):
        parse_routes({"schema": 99})


def test_a_tier_name_then_the_fallback_order_then_the_cloud() -> None:
    p = plan(_chat("fast"), _routes(cloud=True))
    assert (p.routed, p.reason, p.chain) == ("fast", "direct", ("fast", "standard", "longctx", "cloud"))
    assert plan(_chat("fast"), _routes()).chain == ("fast", "standard", "longctx")


def test_auto_uses_the_rules() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    rules = RoutingRules(default_tier="standard", tool_tier="fast", long_tier="longctx")
    assert plan(_chat("auto"), _routes(rules=rules)).reason == "auto-default"
    p = plan(_chat("auto", tools=tools), _routes(rules=rules))
    assert (p.routed, p.reason) == ("fast", "auto-tools")


def test_too_long_for_a_tier_skips_it_and_the_long_tier_goes_first() -> None:
    long = "word " * 2500  # ~3,100 estimated tokens: over 2048 - 512
    p = plan(_chat("fast", long), _routes(cloud=True))
    assert p.routed == "fast" and p.chain == ("longctx", "cloud")
    huge = "word " * 40000
    assert plan(_chat("standard", huge), _routes(cloud=True)).chain == ("cloud",)
    assert plan(_chat("standard", huge), _routes()).chain == ()


def test_the_cloud_by_name_goes_to_the_cloud_only() -> None:
    assert plan(_chat("cloud"), _routes(cloud=True)).chain == ("cloud",)
    assert plan(_chat("vendor/model"), _routes(cloud=True)).chain == ("cloud",)
    with pytest.raises(UnknownModel):
        plan(_chat("cloud"), _routes(cloud=False))
    with pytest.raises(UnknownModel):
        plan(_chat("nope"), _routes())
    with pytest.raises(UnknownModel):
        plan({"messages": []}, _routes())


def test_near_a_limit_is_counted_for_real() -> None:
    routes = _routes()
    assert is_near_a_limit(1400, routes)
    assert not is_near_a_limit(50, routes)


def test_requests_that_can_never_succeed() -> None:
    assert shape_problem("/v1/chat/completions", {"model": "x", "messages": []})
    assert shape_problem("/v1/messages", {"model": "x", "messages": ["a"]})
    assert shape_problem("/v1/completions", {"model": "x"})
    assert shape_problem("/v1/chat/completions", _chat("x")) is None
    assert shape_problem("/v1/models", {}) is None


def test_rules_that_would_route_everything_away() -> None:
    windows = {"standard": 2048, "fast": 2048, "longctx": 8192}
    ok = RoutingRules("standard", "standard", "longctx")
    assert check_rules(ok, windows) is None
    bad = RoutingRules("standard", "standard", "longctx", output_reserve_tokens=100000)
    assert "leaves too little room" in (check_rules(bad, windows) or "")
    too_long = RoutingRules("standard", "standard", "longctx", long_prompt_tokens=9000)
    assert "long tier" in (check_rules(too_long, windows) or "")
    assert check_rules(bad, {"standard": None}) is None  # windows unknown: nothing to check


def test_metrics_text_round_trips_for_status() -> None:
    hist = ([0] * 15, 0.0, 0)
    tiers = {"fast": {"counters": {"requests": 3, "fallbacks_in": 1, "client_errors": 1},
                      "hist": {"ttft_seconds": hist, "duration_seconds": hist}}}
    text = render(tiers, {("fast", "tools"): 2}, 1000.0)
    assert '# TYPE mlx_stack_gateway_requests_total counter' in text
    s = summary(text)
    assert s["tiers"]["fast"]["requests"] == 3 and s["tiers"]["fast"]["fallbacks_in"] == 1
    assert s["auto"] == {"fast": 2} and s["auto_reasons"] == {"tools": 2} and s["started_at"] == 1000.0
