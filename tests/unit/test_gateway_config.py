"""The gateway's config: LiteLLM's (the cloud group only: the front door owns the local
tiers) and the front door's routes; rendered in core, written by services.gateway_config."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import yaml

from mlx_stack.core import gateway_config
from mlx_stack.core.front_door import parse_routes
from mlx_stack.core.stack import Cloud, Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import gateway_config as files
from mlx_stack.system import secrets


def _stack(cloud: Cloud | None = None) -> Stack:
    tiers = (
        Tier("standard", "org/big", "/m/big", 8001, tool_call_parser="hermes"),
        Tier("fast", "org/small", "/m/small", 8002),
    )
    return Stack(tiers, ("standard", "fast"), Gateway(port=4000), cloud or Cloud())


def test_only_the_cloud_group_no_local_tier() -> None:
    stack = _stack(Cloud(model="some/model", base_url="http://127.0.0.1:9999/v1"))
    config = gateway_config.render_litellm(stack)
    (cloud,) = config["model_list"]
    assert cloud["model_name"] == "cloud"
    assert cloud["litellm_params"]["api_base"] == "http://127.0.0.1:9999/v1"
    assert cloud["litellm_params"]["model"] == "openai/some/model"
    assert cloud["litellm_params"]["api_key"] == "os.environ/MLX_STACK_OPENROUTER_KEY"
    assert "8001" not in yaml.safe_dump(config)
    assert "fallbacks" not in config["router_settings"]
    assert "callbacks" not in config["litellm_settings"]


def test_master_key_is_read_from_the_environment() -> None:
    config = gateway_config.render_litellm(_stack())
    assert config["general_settings"]["master_key"] == "os.environ/MLX_STACK_GATEWAY_KEY"
    assert "sk-" not in yaml.safe_dump(config)
    assert config["router_settings"]["num_retries"] == 0


# --- the files (services.gateway_config) ---------------------------------------------------


def test_litellm_file_holds_no_key_even_with_keys_stored(isolated_home: Paths) -> None:
    secrets.write_secret(isolated_home, secrets.OPENROUTER_KEY, "sk-or-very-secret-1234")
    gw_key = secrets.ensure_gateway_key(isolated_home)
    path = files.write_litellm_config(isolated_home, _stack())
    assert path == isolated_home.litellm_config_file
    text = path.read_text()
    assert text.startswith("# Rendered by mlx-stack")
    assert "sk-or-very-secret-1234" not in text and gw_key not in text
    assert yaml.safe_load(text) == gateway_config.render_litellm(_stack())


def test_routes_file_names_the_cloud_only_with_its_port(isolated_home: Paths, tmp_path: Path) -> None:
    model = tmp_path / "small"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"text_config": {"max_position_embeddings": 4096}}))
    stack = _stack()
    stack = replace(stack, tiers=(stack.tiers[0], replace(stack.tiers[1], path=str(model))))
    path = files.write_routes(isolated_home, stack, cloud_port=None)
    assert path == isolated_home.routes_file
    doc = json.loads(path.read_text())
    assert doc["cloud"] is None
    assert [(t["name"], t["context_window"]) for t in doc["tiers"]] == [("standard", None), ("fast", 4096)]
    routes = parse_routes(json.loads(files.write_routes(isolated_home, stack, cloud_port=45123).read_text()))
    assert routes.cloud is not None and routes.cloud.url == "http://127.0.0.1:45123"
    assert routes.fallback_order == ("standard", "fast")
