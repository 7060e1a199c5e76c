"""The `auto` routing rules of a stack: shown by `status`, changed by `config`.

The rules live in stack.yaml's optional ``routing:`` section (:mod:`mlx_stack.core.routing`).
They reach the front door in its routes file (:mod:`mlx_stack.services.gateway_config`),
which the running front door re-reads within half a second (so changing a rule needs no
restart). Its counts live in its memory; :func:`report` reads them from its ``/metrics`` page.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NotRequired, TypedDict

from mlx_stack.core.front_door import check_rules
from mlx_stack.core.gateway_config import rules_for, upstreams
from mlx_stack.core.routing import RoutingRules, default_rules, parse_routing, prompt_limit
from mlx_stack.core.stack import GATEWAY, Stack
from mlx_stack.errors import UsageError
from mlx_stack.paths import Paths
from mlx_stack.services import gateway_config
from mlx_stack.system.locks import file_lock

if TYPE_CHECKING:
    from mlx_stack.core.metrics_text import Counts


class TierLimit(TypedDict):
    """A tier's row of the routing report."""

    name: str
    model: NotRequired[str]
    context_window: int | None
    prompt_limit: int | None  # the longest prompt (estimated tokens) `auto` sends it


@dataclass
class RoutingReport:
    """The routing rules, each tier's window and the front door's counts."""

    rules: RoutingRules
    custom: bool  # stack.yaml has a routing: section
    tiers: list[TierLimit]
    counts: Counts | None  # the running front door's counts, None when it is not running

    def as_dict(self) -> dict[str, object]:
        return {"rules": self.rules.as_dict(), "custom": self.custom, "tiers": self.tiers,
                "counts": self.counts}


def report(p: Paths, stack: Stack) -> RoutingReport:
    """The rules, each tier's window, and the counts of the front door running now."""
    rules = rules_for(stack)
    tiers: list[TierLimit] = [{"name": u.name, "model": u.model, "context_window": u.context_window,
              "prompt_limit": prompt_limit(u.context_window, rules)}
             for u in upstreams(stack, gateway_config.windows(stack))]
    return RoutingReport(rules, stack.routing is not None, tiers, gateway_counts(p, stack))


def gateway_counts(p: Paths, stack: Stack, timeout: float = 2.0) -> Counts | None:
    """The running front door's counts (from its ``/metrics``), or None."""
    from mlx_stack.core.metrics_text import summary
    from mlx_stack.services.running import base_url, running_record
    from mlx_stack.system import probes, secrets

    if running_record(p, GATEWAY) is None:
        return None
    key = secrets.read_secret(p, secrets.GATEWAY_KEY)
    text = probes.fetch_text(base_url(stack, GATEWAY), "/metrics", api_key=key, timeout=timeout)
    return summary(text) if text is not None else None


# `mlx-stack config set routing.KEY VALUE`: the keys, as users type them.
SETTABLE = {
    "routing.default-tier": "default_tier",
    "routing.tool-tier": "tool_tier",
    "routing.long-tier": "long_tier",
    "routing.output-reserve-tokens": "output_reserve_tokens",
    "routing.chars-per-token": "chars_per_token",
    "routing.long-prompt-tokens": "long_prompt_tokens",
}


def _parse_value(field: str, raw: str) -> object:
    from mlx_stack.core.routing import NULLABLE, RULE_KINDS
    from mlx_stack.core.validate import from_text

    text = raw.strip()
    if text.lower() in ("none", "null", "") and field in NULLABLE:
        return None
    return from_text(text, RULE_KINDS[field])  # parse_routing names a value that is not one


def set_rule(p: Paths, key: str, raw: str | None) -> RoutingRules:
    """Change one rule in stack.yaml (``raw`` None: back to its default), under the lock;
    a running front door picks it up within half a second. Refuses values that would
    route everything away from the local tiers."""
    from mlx_stack.errors import StateError
    from mlx_stack.services import stack_store

    field = SETTABLE.get(key)
    if field is None:
        from mlx_stack.core.config_schema import shown
        from mlx_stack.errors import NotFoundError

        raise NotFoundError(f"unknown config key {shown(key)}", hint="routing keys: " + ", ".join(SETTABLE))
    with file_lock(p.lock_file, what="mlx-stack"):
        stack = stack_store.load(p)
        current: dict[str, object] = {k: v for k, v in rules_for(stack).as_dict().items()}
        if raw is None:
            current[field] = getattr(default_rules(stack.chat_tiers), field)
        else:
            current[field] = _parse_value(field, raw)
        try:
            rules = parse_routing(current, stack.chat_tiers, "value")
        except StateError as exc:
            raise UsageError(f"invalid {key}: {exc.message.split(': ', 2)[-1]}",
                             hint="see `mlx-stack status` for the tiers and the current rules") from None
        problem = check_rules(rules, gateway_config.windows(stack))
        if problem is not None:
            raise UsageError(f"invalid {key}: {problem}; it would send every request away from "
                             "the local tiers", hint="see `mlx-stack status` for each tier's window")
        # Back to every default: no `routing:` section left behind.
        stack = replace(stack, routing=None if rules == default_rules(stack.chat_tiers) else rules)
        stack_store.save(p, stack)
        from mlx_stack.services.service_control import litellm_port

        if p.routes_file.exists():  # a running front door follows within half a second
            gateway_config.write_gateway_config(p, stack, cloud_port=litellm_port(p))
    return rules
