"""The gateway hook's own logic, called directly (LiteLLM calls the same methods in the proxy)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from mlx_stack.core.litellm_routing import TierRoute, routing_document
from mlx_stack.core.routing import default_rules
from mlx_stack.gateway.counters import read_counts
from mlx_stack.gateway.table import TableSource

TIERS = [TierRoute("standard", "org/std", 2048), TierRoute("fast", "org/fast", 2048),
         TierRoute("longctx", "org/long", 8192)]
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def hook_module() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # importing LiteLLM must not go online
        from mlx_stack.gateway import hook

        yield hook


@pytest.fixture
def hook(hook_module: ModuleType, tmp_path: Path):
    path = tmp_path / "routing.json"
    rules = default_rules([t.name for t in TIERS], intent="agent-fleet")
    path.write_text(json.dumps(routing_document(TIERS, rules, counts_file=None)))
    return hook_module.MlxStackHook(TableSource(path), counts_file=tmp_path / "counts.json")


def _run(coro):
    return asyncio.run(coro)


def test_auto_is_rewritten_and_named_in_the_headers(hook) -> None:
    data = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS,
            "litellm_call_id": "c1"}
    assert _run(hook.async_pre_call_hook(None, None, data, "acompletion"))["model"] == "fast"
    _run(hook.async_pre_call_deployment_hook({"litellm_call_id": "c1", "metadata": {"model_group": "fast"}},
                                             None))
    headers = _run(hook.async_post_call_response_headers_hook(data, None, object(), None, {}))
    assert headers == {"x-mlx-stack-requested": "auto", "x-mlx-stack-route": "auto-tools",
                       "x-mlx-stack-tier": "fast", "x-mlx-stack-model": "org/fast"}
    assert not hook._routes and not hook._served  # nothing left behind


def test_the_last_attempt_is_the_tier_that_answered(hook) -> None:
    data = {"model": "standard", "messages": [], "litellm_call_id": "c2"}
    _run(hook.async_pre_call_hook(None, None, data, "anthropic_messages"))
    for group in ("standard", "longctx"):  # a fallback hop
        _run(hook.async_pre_call_deployment_hook(
            {"litellm_call_id": "c2", "litellm_metadata": {"model_group": group}}, None))
    headers = _run(hook.async_post_call_response_headers_hook(data, None, {"type": "message"}))
    assert headers["x-mlx-stack-tier"] == "longctx" and headers["x-mlx-stack-route"] == "fallback"


def test_a_failure_names_no_tier_and_counts_an_error(hook, tmp_path: Path) -> None:
    data = {"model": "standard", "messages": [], "litellm_call_id": "c3"}
    _run(hook.async_pre_call_hook(None, None, data, "acompletion"))
    headers = _run(hook.async_post_call_response_headers_hook(data, None, None))
    assert headers == {"x-mlx-stack-requested": "standard", "x-mlx-stack-route": "direct"}

    async def fail_then_wait() -> None:
        await hook.async_post_call_failure_hook(data, RuntimeError("x"), None)
        await asyncio.sleep(1.3)  # the rate-limited write

    _run(fail_then_wait())
    counts = read_counts(tmp_path / "counts.json")
    assert counts is not None and counts["tiers"]["standard"]["errors"] == 1


def test_without_a_routing_file_requests_pass_untouched(hook_module: ModuleType, tmp_path: Path) -> None:
    bare = hook_module.MlxStackHook(TableSource(tmp_path / "missing.json"), counts_file=tmp_path / "c.json")
    data = {"model": "auto", "messages": [], "litellm_call_id": "c4"}
    assert _run(bare.async_pre_call_hook(None, None, data, "acompletion"))["model"] == "auto"


def test_router_count_reads_anthropic_system(hook_module: ModuleType) -> None:
    plain = hook_module.count_like_router({"messages": [{"role": "user", "content": "hello there"}]})
    with_system = hook_module.count_like_router({
        "messages": [{"role": "user", "content": "hello there"}],
        "system": [{"type": "text", "text": "You are a careful assistant. " * 20}]})
    assert plain and with_system and with_system > plain + 50
