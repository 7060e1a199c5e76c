"""The gateway's two config documents, rendered from the stack (pure, no I/O).

- The front door's routes document (``generated/front-door.json``): each tier's name,
  real model, URL, context window and tokenizer folder; the fallback order; the ``auto``
  rules; the cloud (LiteLLM on an internal port) when it runs. The front door reads it
  with :func:`mlx_stack.core.front_door.parse_routes`, the inverse of :func:`render_routes`.
- LiteLLM's config (``generated/litellm.yaml``). LiteLLM runs only when a cloud key is
  stored, on an internal 127.0.0.1 port, with one model group: ``cloud`` (OpenRouter).
  The front door hands it a request when every local tier failed before the first byte,
  or when the request names the cloud model; LiteLLM does the API translation (Anthropic
  ``/v1/messages`` and the Responses API to OpenRouter's OpenAI API). No local tier is
  in its config.

Neither document holds a secret. Facts this relies on (checked against LiteLLM 1.108):
``os.environ/NAME`` values are resolved at start, for ``general_settings.master_key`` and
for ``litellm_params.api_key``; the proxy refuses to start without a strong master key.

:mod:`mlx_stack.services.gateway_config` writes both files (where :class:`~mlx_stack.paths.Paths`
says) and supplies what needs I/O: each tier's context window, LiteLLM's port.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlx_stack.core import aliases
from mlx_stack.core.front_door import ROUTES_SCHEMA, Upstream
from mlx_stack.core.routing import RoutingRules, default_rules
from mlx_stack.core.stack import CLOUD, Stack, Tier

MASTER_KEY_ENV = "MLX_STACK_GATEWAY_KEY"
CLOUD_KEY_ENV = "MLX_STACK_OPENROUTER_KEY"
CLOUD_TIMEOUT_S = 120
NUM_RETRIES = 0  # the front door decides about retries and fallbacks
LITELLM_HEADER = "# Rendered by mlx-stack from stack.yaml; do not edit (it is rewritten at `up`).\n"


# --- the front door's routes --------------------------------------------------------------


def rules_for(stack: Stack) -> RoutingRules:
    """The stack's ``auto`` rules: its ``routing:`` section, else the defaults for its tiers."""
    return stack.routing if stack.routing is not None else default_rules(stack.chat_tiers)


def upstreams(stack: Stack, windows: Mapping[str, int | None]) -> list[Upstream]:
    """The tiers as the front door sees them; ``windows``: each tier's context window."""
    return [Upstream(t.name, t.model, f"http://127.0.0.1:{t.port}",
                     None if t.retrieval else windows.get(t.name), t.path,
                     t.idle_unload if t.on_demand else None,
                     t.serving.planned_mb if t.on_demand and t.serving is not None else None,
                     t.kind, t.served_model if t.retrieval or t.cluster else None, t.model_aliases,
                     t.max_input_tokens, _endpoints(t))
            for t in stack.tiers]


def render_routes(tiers: list[Upstream], fallback_order: list[str], rules: RoutingRules,
                  cloud: Upstream | None, aliases: list[tuple[str, str]] | None = None,
                  default_tier: str | None = None) -> dict[str, object]:
    """The routes document (JSON-ready, no secrets); ``aliases``: (pattern, tier) in the
    order they are tried, ``default_tier``: where a name nothing matches goes."""
    def entry(u: Upstream) -> dict[str, object]:
        out: dict[str, object] = {"name": u.name, "model": u.model, "url": u.url,
                                  "context_window": u.context_window, "tokenizer": u.tokenizer}
        if u.on_demand:
            out["on_demand"] = {"idle_unload_s": u.idle_unload_s, "planned_mb": u.planned_mb}
        if u.kind != "chat":
            out.update(kind=u.kind, served=u.served, aliases=list(u.aliases),
                       max_input_tokens=u.max_input_tokens)
        if u.endpoints:  # a cluster tier: mlx_lm.server, asked for its model folder
            out.update(served=u.served, endpoints=list(u.endpoints))
        return out

    return {"schema": ROUTES_SCHEMA, "tiers": [entry(t) for t in tiers],
            "fallback_order": list(fallback_order), "rules": rules.as_dict(),
            "cloud": entry(cloud) if cloud else None,
            "aliases": [{"pattern": p, "tier": t} for p, t in aliases or []],
            "default_tier": default_tier}


def routes_for(stack: Stack, windows: Mapping[str, int | None], cloud_port: int | None) -> dict[str, object]:
    """The routes document of a stack; ``cloud_port``: LiteLLM's internal port, None without it."""
    cloud = Upstream(CLOUD, stack.cloud.model, f"http://127.0.0.1:{cloud_port}") if cloud_port else None
    names = stack.tier_names
    default_tier = stack.default_tier if stack.default_tier in names else None
    doc = render_routes(upstreams(stack, windows), list(stack.fallback_order), rules_for(stack), cloud,
                        aliases.effective(stack.aliases, names, stack.fallback_order), default_tier)
    if stack.peers:  # issue 26: the other front doors (their keys stay in secrets/)
        doc["peers"] = [{"name": p.name, "url": p.url, "ca_file": p.ca_file} for p in stack.peers]
        doc["prefer_peers"] = stack.gateway.prefer_peers
    return doc


# --- LiteLLM (the cloud) ------------------------------------------------------------------


def render_litellm(stack: Stack) -> dict[str, object]:
    """LiteLLM's proxy config as a mapping (:func:`litellm_text` dumps it as YAML)."""
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


def litellm_text(stack: Stack) -> str:
    """The text of ``litellm.yaml``: a do-not-edit header, then the config as YAML."""
    import yaml

    return LITELLM_HEADER + yaml.safe_dump(render_litellm(stack), sort_keys=False)


def _endpoints(t: Tier) -> tuple[str, ...]:
    """What a tier's server answers when not every endpoint (a cluster tier's mlx_lm.server)."""
    if t.cluster is None:
        return ()
    from mlx_stack.core.cluster import ENDPOINTS

    return ENDPOINTS
