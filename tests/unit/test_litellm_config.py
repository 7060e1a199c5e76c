from __future__ import annotations

import yaml

from mlx_stack.core import litellm_config
from mlx_stack.core.stack import Cloud, Gateway, Stack, Tier


def _stack(cloud: Cloud | None = None) -> Stack:
    tiers = (
        Tier("standard", "org/big", "/m/big", 8001, tool_call_parser="hermes"),
        Tier("fast", "org/small", "/m/small", 8002),
        Tier("longctx", "org/long", "/m/long", 8003),
    )
    return Stack(tiers, ("standard", "fast", "longctx"), Gateway(port=4000), cloud or Cloud())


def test_one_group_per_tier_named_after_it() -> None:
    config = litellm_config.render(_stack())
    groups = {m["model_name"]: m["litellm_params"] for m in config["model_list"]}
    assert list(groups) == ["standard", "fast", "longctx"]
    assert groups["fast"]["model"] == "openai/fast"  # vllm-mlx serves the tier's name
    assert groups["fast"]["api_base"] == "http://127.0.0.1:8002/v1"


def test_fallbacks_live_in_router_settings_only() -> None:
    config = litellm_config.render(_stack())
    assert config["router_settings"]["fallbacks"] == [
        {"standard": ["fast", "longctx"]},
        {"fast": ["standard", "longctx"]},
        {"longctx": ["standard", "fast"]},
    ]
    assert "fallbacks" not in config["general_settings"]
    assert "fallbacks" not in config["litellm_settings"]


def test_retries_and_timeouts_are_set() -> None:
    config = litellm_config.render(_stack())
    assert config["router_settings"]["num_retries"] == 0
    assert config["router_settings"]["timeout"] == litellm_config.REQUEST_TIMEOUT_S
    for m in config["model_list"]:
        assert m["litellm_params"]["stream_timeout"] == litellm_config.STREAM_TIMEOUT_S


def test_master_key_is_read_from_the_environment() -> None:
    config = litellm_config.render(_stack(), cloud=True)
    assert config["general_settings"]["master_key"] == "os.environ/MLX_STACK_GATEWAY_KEY"
    text = yaml.safe_dump(config)
    assert "sk-" not in text


def test_cloud_group_comes_last_in_every_chain() -> None:
    stack = _stack(Cloud(model="some/model", base_url="http://127.0.0.1:9999/v1"))
    config = litellm_config.render(stack, cloud=True)
    cloud = config["model_list"][-1]
    assert cloud["model_name"] == "cloud"
    assert cloud["litellm_params"]["api_base"] == "http://127.0.0.1:9999/v1"
    assert cloud["litellm_params"]["model"] == "openai/some/model"
    assert cloud["litellm_params"]["api_key"] == "os.environ/MLX_STACK_OPENROUTER_KEY"
    for chain in config["router_settings"]["fallbacks"]:
        (targets,) = chain.values()
        assert targets[-1] == "cloud"


def test_single_tier_without_cloud_has_no_fallbacks() -> None:
    stack = Stack((Tier("solo", "org/x", "/m/x", 8001),), ("solo",))
    assert litellm_config.render(stack)["router_settings"]["fallbacks"] == []
    with_cloud = litellm_config.render(stack, cloud=True)
    assert with_cloud["router_settings"]["fallbacks"] == [{"solo": ["cloud"]}]
