"""LiteLLM's config: the cloud group only (the front door owns the local tiers)."""

from __future__ import annotations

import yaml

from mlx_stack.core import litellm_config
from mlx_stack.core.stack import Cloud, Gateway, Stack, Tier


def _stack(cloud: Cloud | None = None) -> Stack:
    tiers = (
        Tier("standard", "org/big", "/m/big", 8001, tool_call_parser="hermes"),
        Tier("fast", "org/small", "/m/small", 8002),
    )
    return Stack(tiers, ("standard", "fast"), Gateway(port=4000), cloud or Cloud())


def test_only_the_cloud_group_no_local_tier() -> None:
    stack = _stack(Cloud(model="some/model", base_url="http://127.0.0.1:9999/v1"))
    config = litellm_config.render(stack)
    (cloud,) = config["model_list"]
    assert cloud["model_name"] == "cloud"
    assert cloud["litellm_params"]["api_base"] == "http://127.0.0.1:9999/v1"
    assert cloud["litellm_params"]["model"] == "openai/some/model"
    assert cloud["litellm_params"]["api_key"] == "os.environ/MLX_STACK_OPENROUTER_KEY"
    assert "8001" not in yaml.safe_dump(config)
    assert "fallbacks" not in config["router_settings"]
    assert "callbacks" not in config["litellm_settings"]


def test_master_key_is_read_from_the_environment() -> None:
    config = litellm_config.render(_stack())
    assert config["general_settings"]["master_key"] == "os.environ/MLX_STACK_GATEWAY_KEY"
    assert "sk-" not in yaml.safe_dump(config)
    assert config["router_settings"]["num_retries"] == 0
