"""The LiteLLM proxy hook: ``auto`` routing, served-by headers, per-tier counts.

Loaded by the proxy from ``litellm_settings.callbacks: mlx_stack.gateway.hook.proxy_hook``
(see :mod:`mlx_stack.core.litellm_routing`). LiteLLM calls, per request:

1. ``async_pre_call_hook`` before routing: an ``auto`` request gets its tier here
   (chat completions and Anthropic ``/v1/messages`` alike);
2. ``async_pre_call_deployment_hook`` before each attempt on a deployment, fallbacks
   included: the last one names the tier that actually answered;
3. ``async_post_call_response_headers_hook`` before the response (or the first chunk
   of a stream) leaves: adds the ``x-mlx-stack-*`` headers;
4. the success and fallback events and the failure hook, which only bump counters.

Every step is best-effort: a bug here must never fail a request that LiteLLM could
serve, so errors are logged and the request goes on unrouted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from mlx_stack.core.litellm_routing import COUNTS_FILE, RoutingTable
from mlx_stack.core.routing import AUTO, decide, is_borderline
from mlx_stack.gateway.counters import Counters, CountsWriter, Flusher
from mlx_stack.gateway.table import TableSource, routing_file

log = logging.getLogger("mlx_stack.gateway")

HEADER_TIER = "x-mlx-stack-tier"  # the tier that answered
HEADER_MODEL = "x-mlx-stack-model"  # the real model behind it
HEADER_REQUESTED = "x-mlx-stack-requested"  # the model name the client sent
HEADER_ROUTE = "x-mlx-stack-route"  # direct | auto-default | auto-tools | auto-long-prompt | fallback
_MAX_INFLIGHT = 4096  # bounds the per-request maps if a request never reaches the headers hook


def _remember(store: OrderedDict[str, Any], key: str, value: Any) -> None:
    store[key] = value
    if len(store) > _MAX_INFLIGHT:
        store.popitem(last=False)


def _metadata(kwargs: dict[str, Any]) -> dict[str, Any]:
    for key in ("litellm_metadata", "metadata"):
        value = kwargs.get(key)
        if isinstance(value, dict) and value.get("model_group"):
            return value
    params = kwargs.get("litellm_params") or {}
    for key in ("metadata", "litellm_metadata"):
        value = params.get(key)
        if isinstance(value, dict) and value.get("model_group"):
            return value
    return {}


def count_like_router(data: dict[str, Any]) -> int | None:
    """The prompt's tokens as LiteLLM's router counts them for ``max_input_tokens``
    (``litellm.token_counter`` over the messages, an Anthropic ``system`` and the tools)."""
    import litellm

    if data.get("input") is not None:
        return None  # a Responses API request: the estimate decides (the router counts it itself)
    messages = list(data.get("messages") or [])
    system = data.get("system")
    if isinstance(system, list):
        system = "".join(b.get("text", "") for b in system if isinstance(b, dict))
    if isinstance(system, str) and system:
        messages.insert(0, {"role": "system", "content": system})
    try:
        return int(litellm.token_counter(messages=messages, tools=data.get("tools") or None))
    except Exception:
        log.debug("mlx-stack: token count failed; the estimate decides", exc_info=True)
        return None


def _default_counts_file() -> Path:
    from mlx_stack.paths import paths

    return paths().run_dir / COUNTS_FILE


class MlxStackHook(CustomLogger):
    def __init__(self, source: TableSource | None = None, counts_file: Path | None = None):
        super().__init__()
        self.source = source or TableSource(routing_file())
        table = self.source.get()
        if counts_file is None:
            counts_file = Path(table.counts_file) if table and table.counts_file else _default_counts_file()
        self.counters = Counters()
        writer = CountsWriter(self.counters, counts_file)
        self._flusher = Flusher(writer)
        try:
            writer.write()  # counts start at zero with each gateway
        except OSError as exc:
            log.error("mlx-stack: cannot write %s: %s", counts_file, exc)
        self._routes: OrderedDict[str, tuple[str, str, str]] = OrderedDict()
        self._served: OrderedDict[str, str] = OrderedDict()

    def _changed(self) -> None:
        # Without a running loop (a call from a thread) the next change on the loop flushes.
        with contextlib.suppress(RuntimeError):
            self._flusher.changed(asyncio.get_running_loop())

    # 1. before routing
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict,
                                  call_type: Any) -> Any:
        try:
            await self._route(data)
        except Exception:
            log.exception("mlx-stack: routing failed; the request goes on as sent")
        return data

    async def _route(self, data: dict) -> None:
        requested = data.get("model")
        if not isinstance(requested, str):
            return
        reason = "direct"
        table = self.source.get()
        if requested == AUTO and table is not None:
            windows = table.context_windows
            decision = decide(data, table.rules, windows)
            if is_borderline(data, table.rules, windows, estimated=decision.estimated_tokens):
                # Near a limit: count like the router's own context check (off the loop:
                # a long prompt takes milliseconds to tokenize).
                tokens = await asyncio.to_thread(count_like_router, data)
                if tokens is not None:
                    decision = decide(data, table.rules, windows, tokens=tokens)
            data["model"] = decision.tier
            reason = f"auto-{decision.reason}"
            self.counters.routed_auto(decision.tier, decision.reason)
            self._changed()
        call_id = data.get("litellm_call_id")
        if isinstance(call_id, str):
            _remember(self._routes, call_id, (requested, data["model"], reason))

    # 2. before each attempt on a deployment (fallback hops included)
    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict | None:
        call_id = kwargs.get("litellm_call_id")
        group = _metadata(kwargs).get("model_group")
        if isinstance(call_id, str) and isinstance(group, str):
            _remember(self._served, call_id, group)
        return None

    # 3. response headers, streaming or not
    async def async_post_call_response_headers_hook(
        self, data: dict, user_api_key_dict: Any, response: Any,
        request_headers: dict[str, str] | None = None, litellm_call_info: dict[str, Any] | None = None,
    ) -> dict[str, str] | None:
        try:
            return self._headers(data, response, litellm_call_info or {})
        except Exception:
            log.exception("mlx-stack: could not build the served-by headers")
            return None

    def _headers(self, data: dict, response: Any, call_info: dict[str, Any]) -> dict[str, str]:
        call_id = data.get("litellm_call_id")
        route = self._routes.pop(call_id, None) if isinstance(call_id, str) else None
        served = self._served.pop(call_id, None) if isinstance(call_id, str) else None
        model = str(data.get("model") or "")
        requested, routed, reason = route or (model, model, "direct")
        headers = {HEADER_REQUESTED: requested, HEADER_ROUTE: reason}
        if response is None:
            return headers  # a failure: nothing served it
        info = call_info.get("model_info") or {}
        tier = served or info.get("mlx_stack_tier") or routed
        if tier != routed:
            headers[HEADER_ROUTE] = "fallback"
        headers[HEADER_TIER] = tier
        table: RoutingTable | None = self.source.get()
        if table is not None and tier in table.tiers:
            headers[HEADER_MODEL] = table.tiers[tier].model
        return headers

    # 4. counting
    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        group = _metadata(kwargs).get("model_group")
        if isinstance(group, str):
            self.counters.served(group)
            self._changed()

    async def async_post_call_failure_hook(self, request_data: dict, original_exception: Exception,
                                           user_api_key_dict: Any, traceback_str: str | None = None) -> None:
        # Once per request that failed for the client (a failed attempt that a fallback
        # then served is not an error; LiteLLM's failure log event fires for those too).
        tier = request_data.get("model")
        if isinstance(tier, str):
            self.counters.failed(tier)
            self._changed()
        return None

    async def log_success_fallback_event(self, original_model_group: str, kwargs: dict,
                                         original_exception: Exception) -> None:
        target = kwargs.get("model")
        self.counters.fell_back(original_model_group, target if isinstance(target, str) else None)
        self._changed()


proxy_hook = MlxStackHook()
