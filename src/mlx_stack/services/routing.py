"""The `auto` routing rules of a stack: rendered for the gateway, shown by `status`, changed by `config`.

The rules live in stack.yaml's optional ``routing:`` section (:mod:`mlx_stack.core.routing`).
:func:`apply_to_gateway_config` adds them to the rendered LiteLLM config and writes
``generated/routing.json``, which the hook inside the running proxy re-reads within a
second of a change (so changing a rule needs no restart). The hook writes its counts to
``run/gateway-counts.json``; :func:`report` reads them back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlx_stack.core.litellm_routing import COUNTS_FILE, ROUTING_FILE, TierRoute, add_routing, routing_document
from mlx_stack.core.routing import RoutingRules, default_rules, parse_routing, prompt_limit
from mlx_stack.core.stack import CLOUD, GATEWAY, Stack, Tier
from mlx_stack.errors import UsageError
from mlx_stack.paths import Paths
from mlx_stack.system.fs import atomic_write, file_lock


def routing_file(p: Paths) -> Path:
    return p.generated_dir / ROUTING_FILE


def counts_file(p: Paths) -> Path:
    return p.run_dir / COUNTS_FILE


def context_window(tier: Tier) -> int | None:
    """The tier's context window: stack.yaml's value, else the model's own config.json."""
    if tier.context_window is not None:
        return tier.context_window
    try:
        config = json.loads((Path(tier.path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") or {}):
        value = section.get("max_position_embeddings") if isinstance(section, dict) else None
        if isinstance(value, int) and value > 0:
            return value
    return None


def rules_for(stack: Stack) -> RoutingRules:
    return stack.routing if stack.routing is not None else default_rules(stack.tier_names)


def tier_routes(stack: Stack, *, cloud: bool = False) -> list[TierRoute]:
    routes = [TierRoute(t.name, t.model, context_window(t)) for t in stack.tiers]
    if cloud:
        routes.append(TierRoute(CLOUD, stack.cloud.model, None))
    return routes


def write_routing_file(p: Paths, stack: Stack, *, cloud: bool = False) -> Path:
    """Write ``generated/routing.json`` (what the gateway hook reads) atomically."""
    doc = routing_document(tier_routes(stack, cloud=cloud), rules_for(stack), counts_file=str(counts_file(p)))
    path = routing_file(p)
    atomic_write(path, json.dumps(doc, indent=1) + "\n")
    return path


def apply_to_gateway_config(p: Paths, stack: Stack, config: dict[str, Any], *, cloud: bool) -> dict[str, Any]:
    """The rendered LiteLLM config plus `auto`, the hook and context-window fallbacks;
    writes the routing file the hook reads."""
    write_routing_file(p, stack, cloud=cloud)
    routes = tier_routes(stack, cloud=cloud)
    return add_routing(config, routes, rules_for(stack), cloud=CLOUD if cloud else None)


@dataclass
class RoutingReport:
    rules: RoutingRules
    custom: bool  # stack.yaml has a routing: section
    tiers: list[dict[str, Any]]  # name, model, context_window, prompt_limit
    counts: dict[str, Any] | None  # the running gateway's counts, None when it is not running

    def as_dict(self) -> dict[str, Any]:
        return {"rules": self.rules.as_dict(), "custom": self.custom, "tiers": self.tiers,
                "counts": self.counts}


def report(p: Paths, stack: Stack) -> RoutingReport:
    """The rules, each tier's window, and the counts of the gateway running now."""
    from mlx_stack.gateway.counters import read_counts
    from mlx_stack.services.service_control import running_record

    rules = rules_for(stack)
    tiers = [{"name": r.name, "model": r.model, "context_window": r.context_window,
              "prompt_limit": prompt_limit(r.context_window, rules)} for r in tier_routes(stack)]
    counts = read_counts(counts_file(p))
    record = running_record(p, GATEWAY)
    # Counts belong to the running gateway only if it wrote them after it started.
    if counts is None or record is None or float(counts.get("started_at", 0)) < record.start_time - 1:
        counts = None
    return RoutingReport(rules, stack.routing is not None, tiers, counts)


# `mlx-stack config set routing.KEY VALUE`: the keys, as users type them.
SETTABLE = {
    "routing.default-tier": "default_tier",
    "routing.tool-tier": "tool_tier",
    "routing.long-tier": "long_tier",
    "routing.output-reserve-tokens": "output_reserve_tokens",
    "routing.chars-per-token": "chars_per_token",
    "routing.long-prompt-tokens": "long_prompt_tokens",
}


def _parse_value(field: str, raw: str) -> Any:
    text = raw.strip()
    if text.lower() in ("none", "null", "") and field in ("long_tier", "long_prompt_tokens"):
        return None
    if field in ("output_reserve_tokens", "long_prompt_tokens"):
        try:
            return int(text)
        except ValueError:
            return text  # parse_routing names the problem
    if field == "chars_per_token":
        try:
            return float(text)
        except ValueError:
            return text
    return text


def set_rule(p: Paths, key: str, raw: str | None) -> RoutingRules:
    """Change one rule in stack.yaml (``raw`` None: back to its default), under the lock;
    a running gateway picks it up within a second."""
    from mlx_stack.errors import StateError
    from mlx_stack.services import stack_store

    field = SETTABLE.get(key)
    if field is None:
        raise UsageError(f"unknown routing key {key!r}", hint="routing keys: " + ", ".join(SETTABLE))
    with file_lock(p.lock_file, what="mlx-stack"):
        stack = stack_store.load(p)
        current = {k: v for k, v in rules_for(stack).as_dict().items()}
        if raw is None:
            current[field] = getattr(default_rules(stack.tier_names), field)
        else:
            current[field] = _parse_value(field, raw)
        try:
            rules = parse_routing(current, stack.tier_names, "value")
        except StateError as exc:
            raise UsageError(f"invalid {key}: {exc.message.split(': ', 2)[-1]}",
                             hint="see `mlx-stack status` for the tiers and the current rules") from None
        stack = replace(stack, routing=rules)
        stack_store.save(p, stack)
        from mlx_stack.services.service_control import gateway_config_path, write_gateway_config

        if gateway_config_path(p).exists():
            # The hook re-reads routing.json, and the gateway's reloader the LiteLLM
            # config (windows, chains): a running gateway follows within a second.
            write_gateway_config(p, stack)
    return rules
