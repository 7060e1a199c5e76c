"""The model names clients send, mapped onto tiers (pure, no I/O).

Coding agents send their own model names (Claude Code ``claude-opus-4-8[1m]`` or a haiku
name, Codex ``gpt-5-codex``, ...). stack.yaml's optional ``aliases:`` mapping (glob
pattern -> tier) names a tier for them; the built-in :data:`DEFAULT_ALIASES` follow it.
Patterns are :mod:`fnmatch` globs (``*``, ``?``, ``[seq]``) matched case-insensitively
against the whole name; the first match wins. A real tier name and ``auto`` always win
over an alias (:func:`mlx_stack.core.front_door.plan`). The optional ``default_tier``
takes every name nothing matched (otherwise such a name is a 404).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

AGENT = "agent"  # a default alias's target: the tier that takes agent traffic
FAST = "fast"  # ... and the small-task tier (Claude Code's haiku names)
AGENT_TIER = "standard"  # the agent tier by convention
MAX_PATTERN = 200

# Built-in aliases, after the user's: (pattern, target). Targets are tier names, or AGENT.
DEFAULT_ALIASES: tuple[tuple[str, str], ...] = (
    ("claude-*haiku*", FAST),
    ("claude-*opus*", AGENT),
    ("claude-*sonnet*", AGENT),
    ("gpt-*", AGENT),
    ("chatgpt-*", AGENT),
    ("o1*", AGENT),
    ("o3*", AGENT),
    ("o4*", AGENT),
    ("codex*", AGENT),
)


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be an alias pattern, or None."""
    if not pattern or not pattern.strip():
        return "the pattern is empty"
    if len(pattern) > MAX_PATTERN:
        return f"the pattern is longer than {MAX_PATTERN} characters"
    if any(unicodedata.category(c).startswith("C") or c.isspace() for c in pattern):
        return "the pattern holds a space or a control character"
    return None


def pick_tier(wanted: str, tier_names: Sequence[str], fallback_order: Sequence[str]) -> str | None:
    """The tier a target names in this stack: ``wanted`` when it is a tier; for the
    built-in targets (AGENT, FAST) missing here, the first tier in the fallback order."""
    if wanted == AGENT:
        wanted = AGENT_TIER
    if wanted in tier_names:
        return wanted
    if wanted in (AGENT_TIER, FAST):
        return next((n for n in fallback_order if n in tier_names), None)
    return None


def effective(user: Iterable[tuple[str, str]], tier_names: Sequence[str],
              fallback_order: Sequence[str]) -> list[tuple[str, str]]:
    """Every alias the front door applies, in order: the user's (those naming a tier of
    this stack), then the defaults resolved to this stack's tiers."""
    out: list[tuple[str, str]] = [(p, t) for p, t in user if t in tier_names]
    seen = {p.lower() for p, _ in out}
    for pattern, target in DEFAULT_ALIASES:
        tier = pick_tier(target, tier_names, fallback_order)
        if tier is not None and pattern not in seen:
            out.append((pattern, tier))
    return out


def match(name: str, aliases: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """The first (pattern, tier) whose pattern matches ``name`` (case-insensitive), or None."""
    low = name.lower()
    for pattern, tier in aliases:
        if fnmatchcase(low, pattern.lower()):
            return pattern, tier
    return None
