"""`config set alias.PATTERN TIER` / `config set default-tier TIER`: the model names clients
send (:mod:`mlx_stack.core.aliases`), kept in stack.yaml's ``aliases:`` / ``default_tier``.

Written under the stack lock; a running front door reads them from its routes file within
half a second (no restart).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mlx_stack.core.aliases import effective, match, pattern_problem
from mlx_stack.core.config_schema import shown
from mlx_stack.errors import NotFoundError, UsageError
from mlx_stack.paths import Paths

PREFIX = "alias."
DEFAULT_TIER = "default-tier"


@dataclass(frozen=True)
class AliasSetting:
    key: str
    value: str | None  # the tier, or None (no alias / 404 for unknown names)
    note: str = ""


def is_alias_key(key: str) -> bool:
    return key.startswith(PREFIX) or key == DEFAULT_TIER


def set_alias(p: Paths, key: str, raw: str | None) -> AliasSetting:
    """Add or change an alias (``alias.PATTERN``) or the tier unknown names go to
    (``default-tier``); ``raw`` None removes it."""
    from mlx_stack.services import gateway_config, stack_store
    from mlx_stack.services.service_control import litellm_port
    from mlx_stack.system.locks import file_lock

    pattern = key[len(PREFIX):] if key.startswith(PREFIX) else None
    if pattern is not None and (problem := pattern_problem(pattern)) is not None:
        raise UsageError(f"invalid alias {shown(key)}: {problem}",
                         hint="`mlx-stack config set 'alias.my-model*' TIER` (quote the glob)")
    tier = None if raw is None else raw.strip()
    with file_lock(p.lock_file, what="mlx-stack"):
        stack = stack_store.load(p)
        if tier is not None and tier not in stack.tier_names:
            raise UsageError(f"invalid {shown(key)}: {shown(tier)} is not a tier of this stack",
                             hint="tiers in this stack: " + ", ".join(stack.tier_names))
        if pattern is None:
            stack = replace(stack, default_tier=tier)
            note = ("model names no tier or alias matches go to it" if tier is not None
                    else "a model name no tier or alias matches is refused (404)")
        else:
            kept = [(pt, t) for pt, t in stack.aliases if pt != pattern]
            if tier is None and len(kept) == len(stack.aliases):
                raise NotFoundError(f"no alias {shown(pattern)} in stack.yaml",
                                    hint="set ones: " + (", ".join(pt for pt, _ in stack.aliases) or "none"))
            stack = replace(stack, aliases=tuple(kept + ([(pattern, tier)] if tier is not None else [])))
            note = ""
            if tier is None:  # what the name goes to now, through the built-in aliases
                hit = match(pattern, effective((), stack.tier_names, stack.fallback_order))
                if hit is not None:
                    tier, note = hit[1], f"through the built-in alias {hit[0]}"
        stack_store.save(p, stack)
        if p.routes_file.exists():  # a running front door follows within half a second
            gateway_config.write_gateway_config(p, stack, cloud_port=litellm_port(p))
    return AliasSetting(key, tier, note)
