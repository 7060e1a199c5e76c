"""What the front door reads of coding agents' requests: the volatile billing line and the
conversation a request belongs to; and the conversation kept on its tier."""

from __future__ import annotations

import json

from mlx_stack.core.agent_requests import BILLING_CONSTANT, normalize_volatile, session_key
from mlx_stack.core.front_door import Plan
from mlx_stack.gateway.sessions import Sessions

SYSTEM = "You are Claude Code, Anthropic's official CLI for Claude."


def _claude(suffix: str) -> dict:
    billing = f"x-anthropic-billing-header: cc_version=2.1.197.{suffix}; cc_entrypoint=sdk-cli;"
    return {"model": "claude-opus-4-8[1m]", "max_tokens": 32000, "system": [
        {"type": "text", "text": billing},
        {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hello"}]}


def test_two_conversations_get_the_same_prefix() -> None:
    a, b = normalize_volatile(_claude("123")), normalize_volatile(_claude("b7d"))
    assert a is not None and b is not None
    assert json.dumps(a["system"]) == json.dumps(b["system"])
    assert a["system"][0]["text"] == BILLING_CONSTANT and a["system"][1]["text"] == SYSTEM
    assert a["messages"] == _claude("x")["messages"] and a["model"] == "claude-opus-4-8[1m]"


def test_the_line_in_a_string_system_or_an_openai_system_message() -> None:
    body = {"system": "x-anthropic-billing-header: cc_version=1.a;\nRest of the prompt"}
    fixed = normalize_volatile(body)
    assert fixed is not None and fixed["system"] == BILLING_CONSTANT + "\nRest of the prompt"
    openai = {"messages": [{"role": "system", "content": "x-anthropic-billing-header: v=9;\nSys"},
                           {"role": "user", "content": "x"}]}
    fixed = normalize_volatile(openai)
    assert fixed is not None and fixed["messages"][0]["content"] == BILLING_CONSTANT + "\nSys"


def test_nothing_to_normalize_returns_none() -> None:
    assert normalize_volatile({"system": SYSTEM, "messages": []}) is None
    user_turn = {"messages": [{"role": "user", "content": "x-anthropic-billing-header: x"}]}
    assert normalize_volatile(user_turn) is None
    assert normalize_volatile({"system": [{"type": "image"}]}) is None
    assert normalize_volatile({"system": [], "messages": "odd"}) is None


def test_session_keys() -> None:
    assert session_key([(b"x-claude-code-session-id", b"abc-123")], {}) == "h:abc-123"
    user = json.dumps({"device_id": "d", "account_uuid": "", "session_id": "5f1e2d3c-aaaa"})
    assert session_key([], {"metadata": {"user_id": user}}) == "m:5f1e2d3c-aaaa"
    sys = {"role": "system", "content": "You are a coding agent."}
    first, reply = {"role": "user", "content": "first"}, {"role": "assistant", "content": "a"}
    one = session_key([], {"messages": [sys, first]})
    two = session_key([], {"messages": [sys, first, reply, {"role": "user", "content": "more"}]})
    other = session_key([], {"messages": [sys, {"role": "user", "content": "another"}]})
    assert one == two != other and one.startswith("o:")
    assert session_key([], {"input": "codex turn"}) == session_key([], {"input": "codex turn"})


def test_auto_keeps_a_conversation_on_its_tier_but_a_named_tier_wins() -> None:
    sessions = Sessions()
    sessions.remember("s", "standard")
    auto = Plan("auto", "longctx", "auto-long-prompt", ("longctx", "standard", "fast"), 9000)
    kept = sessions.keep("s", auto)
    assert kept.chain == ("standard", "longctx", "fast") and kept.reason == "auto-session"
    named = Plan("fast", "fast", "direct", ("fast", "standard"), 10)
    assert sessions.keep("s", named) is named
    too_long = Plan("auto", "longctx", "auto-long-prompt", ("longctx",), 90000)  # standard cannot take it
    assert sessions.keep("s", too_long) is too_long
    assert sessions.keep("unknown", auto) is auto


def test_sessions_are_bounded() -> None:
    sessions = Sessions(kept=3)
    for i in range(10):
        sessions.remember(f"s{i}", "fast")
    assert len(sessions._tiers) == 3


def test_a_first_turn_known_only_by_its_opening_is_not_followed() -> None:
    from mlx_stack.core.agent_requests import has_earlier_turns

    first = {"messages": [{"role": "user", "content": "Hello"}]}
    later = {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"},
                          {"role": "user", "content": "More"}]}
    codex = {"input": [{"type": "message", "role": "user", "content": "x"},
                       {"type": "function_call_output", "call_id": "c", "output": "ok"}]}
    assert not has_earlier_turns(first) and has_earlier_turns(later) and has_earlier_turns(codex)
    sessions = Sessions()
    sessions.remember("o:abc", "longctx")
    sessions.remember("h:abc", "longctx")
    auto = Plan("auto", "standard", "auto-default", ("standard", "longctx"), 10)
    assert sessions.keep("o:abc", auto, continued=False) is auto  # another conversation may open alike
    assert sessions.keep("o:abc", auto, continued=True).routed == "longctx"
    assert sessions.keep("h:abc", auto, continued=False).routed == "longctx"  # the client named it
