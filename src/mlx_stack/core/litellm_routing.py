"""mlx-stack's routing, added to a rendered LiteLLM config (pure, no I/O).

Everything runs inside the one LiteLLM proxy, through its own extension points:

- ``litellm_settings.callbacks`` loads :data:`HOOK` (a ``CustomLogger`` instance from
  the installed mlx-stack package; LiteLLM resolves a dotted ``module.instance`` name
  from the config file's directory first, then from the Python import path). It
  rewrites ``auto`` to a tier, names the serving tier and model in response headers
  and counts requests and fallbacks per tier.
- ``router_settings.enable_pre_call_checks`` with each tier's ``max_input_tokens``
  makes LiteLLM's router refuse a prompt too long for a tier with its own
  ``ContextWindowExceededError``, which ``router_settings.context_window_fallbacks``
  turns into a retry on the long-context tier (then the cloud group). vllm-mlx 0.6.0
  does not check prompt length itself: it answers 200 to a prompt beyond the model's
  window, so without this the error never happens.
- an ``auto`` model group (a copy of the default tier's deployment) so clients see the
  name in ``/v1/models``; the hook rewrites every ``auto`` request before routing.

The hook reads the :func:`routing_document` (JSON) written next to the LiteLLM config.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlx_stack.core.routing import AUTO, RoutingRules, context_window_fallbacks, parse_routing, prompt_limit

HOOK = "mlx_stack.gateway.hook.proxy_hook"
DOCUMENT_SCHEMA = 1
ROUTING_FILE = "routing.json"  # in the generated/ directory, next to litellm.yaml
COUNTS_FILE = "gateway-counts.json"  # in the run/ directory
ROUTING_FILE_ENV = "MLX_STACK_ROUTING_FILE"  # overrides where the hook looks (tests)


@dataclass(frozen=True)
class TierRoute:
    name: str
    model: str  # the real model id, named in the served-by header
    context_window: int | None


@dataclass(frozen=True)
class RoutingTable:
    """What the gateway hook needs: the rules, each tier's window and model, the counts file."""

    rules: RoutingRules
    tiers: dict[str, TierRoute]
    counts_file: str | None = None

    @property
    def context_windows(self) -> dict[str, int | None]:
        return {name: t.context_window for name, t in self.tiers.items()}


def routing_document(tiers: list[TierRoute], rules: RoutingRules, *,
                     counts_file: str | None) -> dict[str, Any]:
    """The JSON document the hook loads (no secrets)."""
    return {
        "schema": DOCUMENT_SCHEMA,
        "rules": rules.as_dict(),
        "tiers": [{"name": t.name, "model": t.model, "context_window": t.context_window} for t in tiers],
        "counts_file": counts_file,
    }


def parse_document(doc: Any, source: str = ROUTING_FILE) -> RoutingTable:
    """The inverse of :func:`routing_document`; StateError naming ``source`` when malformed."""
    from mlx_stack.errors import StateError

    if not (isinstance(doc, dict) and doc.get("schema") == DOCUMENT_SCHEMA
            and isinstance(doc.get("tiers"), list)):
        raise StateError(f"{source}: not an mlx-stack routing document (schema {DOCUMENT_SCHEMA})",
                         hint="run `mlx-stack up` again to rewrite it")
    tiers: dict[str, TierRoute] = {}
    for raw in doc["tiers"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise StateError(f"{source}: malformed tier entry {raw!r}", hint="run `mlx-stack up` again")
        window = raw.get("context_window")
        tiers[raw["name"]] = TierRoute(raw["name"], str(raw.get("model") or raw["name"]),
                                       window if isinstance(window, int) else None)
    rules = parse_routing(doc.get("rules"), list(tiers), source)
    counts = doc.get("counts_file")
    return RoutingTable(rules=rules, tiers=tiers, counts_file=counts if isinstance(counts, str) else None)


def add_routing(config: Mapping[str, Any], tiers: list[TierRoute], rules: RoutingRules, *,
                cloud: str | None = None) -> dict[str, Any]:
    """A copy of a rendered LiteLLM config with ``auto``, the hook and context-window fallbacks.

    ``cloud`` is the model group name of the cloud fallback when the config has one.
    Model groups are matched by name (one group per tier, named after the tier).
    """
    out = copy.deepcopy(dict(config))
    by_name = {t.name: t for t in tiers}
    model_list: list[dict[str, Any]] = out.setdefault("model_list", [])
    default_entry = None
    for entry in model_list:
        tier = by_name.get(entry.get("model_name", ""))
        if tier is None:
            continue
        info = entry.setdefault("model_info", {})
        info["mlx_stack_tier"] = tier.name
        info["mlx_stack_model"] = tier.model
        limit = prompt_limit(tier.context_window, rules)
        if limit is not None:
            info["max_input_tokens"] = limit  # read by the router's pre-call checks
        if tier.name == rules.default_tier:
            default_entry = entry
    if default_entry is not None and not any(e.get("model_name") == AUTO for e in model_list):
        # Reached only if the hook did not run: then `auto` simply means the default tier.
        model_list.append({
            "model_name": AUTO,
            "litellm_params": copy.deepcopy(default_entry["litellm_params"]),
            "model_info": {"mlx_stack_tier": AUTO},
        })

    settings = out.setdefault("litellm_settings", {})
    callbacks = settings.get("callbacks") or []
    callbacks = [callbacks] if isinstance(callbacks, str) else list(callbacks)
    if HOOK not in callbacks:
        callbacks.append(HOOK)
    settings["callbacks"] = callbacks

    router = out.setdefault("router_settings", {})
    windows = {t.name: t.context_window for t in tiers}
    chains = context_window_fallbacks([t.name for t in tiers], windows, rules, cloud=cloud)
    if chains:
        router["context_window_fallbacks"] = chains
        router["enable_pre_call_checks"] = True
    return out
