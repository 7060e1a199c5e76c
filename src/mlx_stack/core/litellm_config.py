"""Render the LiteLLM proxy config from a :class:`Stack` (pure, no I/O).

Facts this relies on (checked against LiteLLM 1.108 on these machines):
- fallbacks are read from ``router_settings.fallbacks``; under ``general_settings``
  they are silently ignored;
- ``os.environ/NAME`` values are resolved at start, for ``general_settings.master_key``
  and for ``litellm_params.api_key``, so no secret is ever written into the file;
- the proxy refuses to start without a strong master key.
"""

from __future__ import annotations

from typing import Any

from mlx_stack.core.stack import CLOUD, Stack

MASTER_KEY_ENV = "MLX_STACK_GATEWAY_KEY"
CLOUD_KEY_ENV = "MLX_STACK_OPENROUTER_KEY"
# Re-applies this file's model list to the running proxy when `setup` rewrites it
# (see mlx_stack.gateway.reload): adding or removing a tier needs no gateway restart.
RELOAD_HOOK = "mlx_stack.gateway.reload.reloader"

# A local server refuses a dead port in under a millisecond, so a retry on the same
# tier only delays the fallback; the next tier is the retry.
NUM_RETRIES = 0
# Generous: a long generation on a big model is legitimate. A wedged server is the
# watchdog's job, not the gateway's.
REQUEST_TIMEOUT_S = 600
# Between chunks of a stream (and until the first one): a server silent for this long
# is stuck, and the request moves on to the fallback.
STREAM_TIMEOUT_S = 120
CLOUD_TIMEOUT_S = 120


def _tier_entry(name: str, port: int) -> dict[str, Any]:
    return {
        "model_name": name,
        "litellm_params": {
            # vllm-mlx serves each tier under the tier's own name (--served-model-name).
            "model": f"openai/{name}",
            "api_base": f"http://127.0.0.1:{port}/v1",
            "api_key": "none",  # the tier binds 127.0.0.1 and needs no key
            "timeout": REQUEST_TIMEOUT_S,
            "stream_timeout": STREAM_TIMEOUT_S,
        },
    }


def render(stack: Stack, *, cloud: bool = False) -> dict[str, Any]:
    """The proxy config as a mapping (the caller dumps it as YAML).

    ``cloud`` adds the OpenRouter group (only when a key is stored); it then comes
    last in every fallback chain.
    """
    model_list = [_tier_entry(t.name, t.port) for t in stack.tiers]
    if cloud:
        model_list.append({
            "model_name": CLOUD,
            "litellm_params": {
                "model": f"openai/{stack.cloud.model}",  # OpenRouter speaks the OpenAI API
                "api_base": stack.cloud.base_url,
                "api_key": f"os.environ/{CLOUD_KEY_ENV}",
                "timeout": CLOUD_TIMEOUT_S,
                "stream_timeout": CLOUD_TIMEOUT_S,
            },
        })
    fallbacks = []
    for t in stack.tiers:
        chain = stack.fallbacks_for(t.name) + ([CLOUD] if cloud else [])
        if chain:
            fallbacks.append({t.name: chain})
    return {
        "model_list": model_list,
        "router_settings": {
            "fallbacks": fallbacks,
            "num_retries": NUM_RETRIES,
            "timeout": REQUEST_TIMEOUT_S,
            # One server per group: cooling it down would only turn a restarted tier away.
            "disable_cooldowns": True,
        },
        "litellm_settings": {
            "request_timeout": REQUEST_TIMEOUT_S,
            "num_retries": NUM_RETRIES,
            "drop_params": True,
            "set_verbose": False,
            "json_logs": False,
            "turn_off_message_logging": True,  # prompts never reach the logs
            "callbacks": [RELOAD_HOOK],
        },
        "general_settings": {
            "master_key": f"os.environ/{MASTER_KEY_ENV}",
            "disable_spend_logs": True,
            "disable_error_logs": True,
            "disable_reset_budget": True,
            "disable_adding_master_key_hash_to_db": True,
            "store_model_in_db": False,
        },
    }
