"""Render the config of LiteLLM, the cloud gateway behind the front door (pure, no I/O).

LiteLLM runs only when a cloud key is stored, on an internal 127.0.0.1 port, with one
model group: ``cloud`` (OpenRouter). The front door hands it a request when every local
tier failed before the first byte, or when the request names the cloud model; LiteLLM
does the API translation (Anthropic ``/v1/messages`` and the Responses API to OpenRouter's
OpenAI API). No local tier is in its config.

Facts this relies on (checked against LiteLLM 1.108 on these machines):
- ``os.environ/NAME`` values are resolved at start, for ``general_settings.master_key``
  and for ``litellm_params.api_key``, so no secret is ever written into the file;
- the proxy refuses to start without a strong master key.
"""

from __future__ import annotations

from typing import Any

from mlx_stack.core.stack import CLOUD, Stack

MASTER_KEY_ENV = "MLX_STACK_GATEWAY_KEY"
CLOUD_KEY_ENV = "MLX_STACK_OPENROUTER_KEY"
CLOUD_TIMEOUT_S = 120
NUM_RETRIES = 0  # the front door decides about retries and fallbacks


def render(stack: Stack) -> dict[str, Any]:
    """The proxy config as a mapping (the caller dumps it as YAML)."""
    return {
        "model_list": [{
            "model_name": CLOUD,
            "litellm_params": {
                "model": f"openai/{stack.cloud.model}",  # OpenRouter speaks the OpenAI API
                "api_base": stack.cloud.base_url,
                "api_key": f"os.environ/{CLOUD_KEY_ENV}",
                "timeout": CLOUD_TIMEOUT_S,
                "stream_timeout": CLOUD_TIMEOUT_S,
            },
        }],
        "router_settings": {"num_retries": NUM_RETRIES, "timeout": CLOUD_TIMEOUT_S},
        "litellm_settings": {
            "request_timeout": CLOUD_TIMEOUT_S,
            "num_retries": NUM_RETRIES,
            "drop_params": True,
            "set_verbose": False,
            "json_logs": False,
            "turn_off_message_logging": True,  # prompts never reach the logs
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
