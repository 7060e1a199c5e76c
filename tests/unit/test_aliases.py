"""core.aliases and the alias parts of the stack, the routes document and plan (pure)."""

from __future__ import annotations

import pytest

from mlx_stack.core.aliases import DEFAULT_ALIASES, effective, match, pattern_problem
from mlx_stack.core.front_door import UnknownModel, Upstream, parse_routes, plan
from mlx_stack.core.gateway_config import render_routes, routes_for
from mlx_stack.core.routing import default_rules
from mlx_stack.core.stack import Stack, dump_stack, parse_stack
from mlx_stack.errors import StateError

NAMES = ["standard", "fast", "longctx"]
TIERS = [Upstream(n, f"org/{n}", f"http://127.0.0.1:{i + 1}", 8192) for i, n in enumerate(NAMES)]


def _routes(user=(), names=NAMES, order=None, default_tier=None, cloud=None):
    tiers = [t for t in TIERS if t.name in names]
    order = list(order or names)
    aliases = effective(user, names, order)
    doc = render_routes(tiers, order, default_rules(names), cloud, aliases, default_tier)
    return parse_routes(doc)


def _chat(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("name, tier", [
    ("claude-opus-4-8[1m]", "standard"), ("claude-opus-4-8", "standard"),
    ("claude-sonnet-4-5-20250929", "standard"), ("Claude-Sonnet-4-5[1M]", "standard"),
    ("claude-haiku-4-5-20251001", "fast"), ("claude-3-5-haiku-latest", "fast"),
    ("gpt-5-codex", "standard"), ("gpt-5.1-codex-max", "standard"), ("GPT-4o", "standard"),
    ("o4-mini", "standard"), ("o3", "standard"), ("o1-preview", "standard"),
    ("codex-mini-latest", "standard"),
])
def test_the_names_agents_send_reach_a_tier(name: str, tier: str) -> None:
    p = plan(_chat(name), _routes())
    assert (p.routed, p.reason) == (tier, "alias")
    assert p.alias is not None and match(name, [(p.alias, tier)]) is not None
    assert p.chain[0] == tier


def test_a_tier_name_and_auto_win_over_an_alias() -> None:
    routes = _routes(user=[("*", "longctx")])
    assert plan(_chat("fast"), routes).reason == "direct"
    assert plan(_chat("auto"), routes).reason.startswith("auto-")
    p = plan(_chat("claude-opus-4-8"), routes)
    assert (p.routed, p.alias) == ("longctx", "*")  # the user's entries come first


def test_unknown_names_are_404_listing_what_is_served_or_go_to_the_default_tier() -> None:
    with pytest.raises(UnknownModel) as exc:
        plan(_chat("llama-70b"), _routes())
    message = str(exc.value)
    assert "'llama-70b' is not served here" in message
    for served in ("standard", "auto", "claude-*opus*", "gpt-*"):
        assert served in message
    p = plan(_chat("llama-70b"), _routes(default_tier="fast"))
    assert (p.routed, p.reason, p.alias) == ("fast", "default-tier", None)


def test_missing_targets_fall_back_to_the_first_tier_in_the_fallback_order() -> None:
    names, order = ["longctx", "fast"], ["longctx", "fast"]
    pairs = dict(effective((), names, order))
    assert pairs["claude-*opus*"] == "longctx" and pairs["claude-*haiku*"] == "fast"
    assert dict(effective((), ["coder"], ["coder"]))["gpt-*"] == "coder"
    # a user alias naming a tier that is gone is not applied
    assert ("x*", "gone") not in effective([("x*", "gone")], names, order)


def test_the_document_carries_the_aliases_and_model_ids_list_them() -> None:
    routes = _routes(user=[("my-*", "fast")], default_tier="standard")
    assert routes.aliases[0] == ("my-*", "fast")
    assert len(routes.aliases) == 1 + len(DEFAULT_ALIASES)
    assert routes.default_tier == "standard"
    assert routes.model_ids[:4] == ["standard", "fast", "longctx", "auto"]
    assert "my-*" in routes.model_ids and "claude-*haiku*" in routes.model_ids
    with pytest.raises(ValueError):
        parse_routes({**render_routes(TIERS, NAMES, default_rules(NAMES), None), "aliases": [{"pattern": 1}]})
    with pytest.raises(ValueError):
        parse_routes({**render_routes(TIERS, NAMES, default_rules(NAMES), None), "default_tier": "gone"})
    old = render_routes(TIERS, NAMES, default_rules(NAMES), None)
    del old["aliases"], old["default_tier"]  # a document written before aliases
    assert parse_routes(old).aliases == ()


@pytest.mark.parametrize("pattern, problem", [
    ("", "empty"), ("  ", "empty"), ("a b", "space"), ("a\x1bb", "control"), ("x" * 201, "longer"),
])
def test_bad_patterns(pattern: str, problem: str) -> None:
    assert problem in (pattern_problem(pattern) or "")


def test_glob_matching_is_whole_name_and_case_insensitive() -> None:
    assert match("MY-MODEL", [("my-*", "fast")]) == ("my-*", "fast")
    assert match("xmy-model", [("my-*", "fast")]) is None
    assert match("a", [("?", "t1"), ("a", "t2")]) == ("?", "t1")  # first match wins


def _stack_data(**extra: object) -> dict:
    tiers = [{"name": n, "model": f"org/{n}", "path": f"/m/{n}", "port": 8000 + i}
             for i, n in enumerate(NAMES)]
    return {"schema": 1, "tiers": tiers, **extra}


def test_stack_yaml_aliases_round_trip_and_are_validated() -> None:
    user = {"my-*": "fast", "claude-*opus*": "longctx"}
    stack = parse_stack(_stack_data(aliases=user, default_tier="fast"))
    assert stack.aliases == (("my-*", "fast"), ("claude-*opus*", "longctx")) and stack.default_tier == "fast"
    assert parse_stack(dump_stack(stack)) == stack
    doc = routes_for(stack, {}, None)
    assert doc["aliases"][:2] == [{"pattern": p, "tier": t} for p, t in user.items()]
    # the user's entry replaces the built-in one of the same pattern
    assert sum(a["pattern"] == "claude-*opus*" for a in doc["aliases"]) == 1
    assert doc["default_tier"] == "fast"
    for bad, where in (({"aliases": {"x": "gone"}}, "aliases.x"),
                       ({"aliases": {"a b": "fast"}}, "aliases.a b"),
                       ({"aliases": ["x"]}, "aliases"), ({"default_tier": "gone"}, "default_tier")):
        with pytest.raises(StateError, match=where):
            parse_stack(_stack_data(**bad))


def test_a_removed_tier_takes_its_aliases_with_it() -> None:
    stack = parse_stack(_stack_data(aliases={"my-*": "fast"}, default_tier="fast"))
    smaller = Stack(tuple(t for t in stack.tiers if t.name != "fast"), ("standard", "longctx"),
                    aliases=stack.aliases, default_tier=stack.default_tier)
    data = dump_stack(smaller)
    assert "aliases" not in data and "default_tier" not in data
    assert parse_stack(data).aliases == ()
    assert routes_for(smaller, {}, None)["default_tier"] is None
