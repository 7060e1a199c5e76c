"""`config set` / `config unset` for every key the CLI takes: the user settings
(:mod:`mlx_stack.services.config`), the `auto` routing rules (``routing.*``,
:mod:`mlx_stack.services.routing`), a tier's mode (``tiers.*``,
:mod:`mlx_stack.services.tier_settings`) and the model-name aliases (``alias.*``,
``default-tier``, :mod:`mlx_stack.services.aliases`), the last three kept in stack.yaml.

Nothing below the CLI imports this module, so the settings store stays free of the
stack's modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlx_stack.json_types import JSON, JSONObject
from mlx_stack.paths import Paths
from mlx_stack.services import config


@dataclass(frozen=True)
class Change:
    """What `config set` / `config unset` changed: the key and its value now (as shown)."""

    key: str
    value: JSON  # secrets masked
    note: str = ""  # e.g. when a tier's new mode takes effect

    def as_dict(self) -> JSONObject:
        return {"key": self.key, "value": self.value, "note": self.note}


def change(p: Paths, key: str, raw: str | None) -> Change:
    """Set any key the CLI takes (``raw`` None: back to its default): a setting (config.yaml
    or the secrets store), a routing rule (``routing.*``) or a tier's mode (``tiers.*``),
    both kept in stack.yaml."""
    if key.startswith("tiers."):  # a tier's mode lives in stack.yaml
        from mlx_stack.services import tier_settings

        tier = tier_settings.set_tier(p, key, raw)
        return Change(key, tier.value, tier.note)
    if key.startswith("routing."):  # the `auto` rules live in stack.yaml
        from mlx_stack.services import routing

        rules = routing.set_rule(p, key, raw)
        return Change(key, getattr(rules, routing.SETTABLE[key]))
    if key.startswith("gateway."):  # the front door's address, TLS and peer preference (stack.yaml)
        from mlx_stack.services import peers

        note = ("a running front door follows within a second" if key == "gateway.prefer-peers"
                else "takes effect at the front door's next start (`mlx-stack down && mlx-stack up`)")
        return Change(key, peers.set_gateway(p, key, raw), note)
    from mlx_stack.services import aliases

    if aliases.is_alias_key(key):  # the model names clients send live in stack.yaml
        alias = aliases.set_alias(p, key, raw)
        return Change(key, alias.value, alias.note)
    setting = config.set_value(p, key, raw) if raw is not None else config.unset_value(p, key)
    return Change(key, setting.shown())
