"""Content-aware routing: the rules behind the ``auto`` model name (pure, no I/O).

A request for ``auto`` goes to the stack's tool tier when it carries ``tools``; to the
long-context tier when its prompt does not fit the chosen tier's context window (less
a reserve for the answer); to the default tier otherwise. The rules are data: an
optional ``routing:`` section of stack.yaml, parsed here with defaults derived from
the tiers, so a stack without the section routes sensibly.

The prompt size is first an estimate, not a tokenizer run: it must cost microseconds
on the gateway's hot path (target: ``auto`` adds <= 1 ms p50 over a plain tier name).
It counts the characters of every string in the prompt (messages, Anthropic
``system``, tool schemas): ASCII at ``chars_per_token`` characters per token (real
BPE tokenizers average about 4 for English, 3 for code), anything else at one token
per character (about right for CJK text). Only when that estimate is near a limit
(:func:`is_borderline`) does the gateway count for real, with the same counter
LiteLLM's router uses for its own context-window check, so both agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import TypeAlias

from mlx_stack.core.validate import Fields, in_file, is_int, is_number
from mlx_stack.errors import StateError
from mlx_stack.json_types import JSONObject

AUTO = "auto"
DEFAULT_TIER = "standard"
LONG_TIER = "longctx"
FAST_TIER = "fast"
DEFAULT_OUTPUT_RESERVE = 512
DEFAULT_CHARS_PER_TOKEN = 4.0
# An estimate within this factor of a limit is re-checked with a real token count.
BORDERLINE_FACTOR = 1.5
# Chat templates wrap each message in a few tokens (role markers, separators).
_PER_MESSAGE_TOKENS = 4
# Image/audio/file payloads (base64 or URLs) are not text tokens of these tiers.
_MEDIA_KEYS = frozenset({"image_url", "input_audio", "source", "file", "image"})


RuleValue: TypeAlias = str | int | float | None  # a value of RoutingRules (its as_dict())


@dataclass(frozen=True)
class RoutingRules:
    """How ``auto`` picks a tier. Tier fields name tiers of the stack (or None)."""

    default_tier: str
    tool_tier: str
    long_tier: str | None
    output_reserve_tokens: int = DEFAULT_OUTPUT_RESERVE  # kept free for the answer
    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN  # ASCII characters per estimated token
    long_prompt_tokens: int | None = None  # optional: longer prompts always go to long_tier

    def as_dict(self) -> dict[str, RuleValue]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """Where one request goes, and why."""

    tier: str
    reason: str  # "tools", "long-prompt" or "default"
    estimated_tokens: int


def default_rules(tier_names: Iterable[str], *, intent: str | None = None) -> RoutingRules:
    """Rules for a stack without a ``routing:`` section.

    The tool tier is ``fast`` for the agent-fleet intent (when the stack has it),
    otherwise the default tier; ``longctx`` is the long tier when present.
    """
    names = list(tier_names)
    default = DEFAULT_TIER if DEFAULT_TIER in names else names[0]
    tool = FAST_TIER if intent == "agent-fleet" and FAST_TIER in names else default
    return RoutingRules(default_tier=default, tool_tier=tool,
                        long_tier=LONG_TIER if LONG_TIER in names else None)


# The type of each rule as `config set routing.KEY VALUE` reads it; NULLABLE rules may be unset.
RULE_KINDS: dict[str, type] = {
    "default_tier": str, "tool_tier": str, "long_tier": str,
    "output_reserve_tokens": int, "chars_per_token": float, "long_prompt_tokens": int,
}
NULLABLE = frozenset({"long_tier", "long_prompt_tokens"})
_TIER_RULES = ("default_tier", "tool_tier", "long_tier")
_LOWEST = {"output_reserve_tokens": 0, "long_prompt_tokens": 1}  # whole-number rules, their minimum
_HINT = "fix the routing: section by hand, or remove it to use the defaults"


def parse_routing(raw: object, tier_names: Iterable[str], source: str = "stack.yaml") -> RoutingRules:
    """Validate the optional ``routing:`` mapping; missing keys take the defaults."""
    names = list(tier_names)
    rules = default_rules(names)
    if raw is None:
        return rules
    f = Fields(raw, "routing.", error=in_file(source, StateError, _HINT))
    f.unknown((fl.name for fl in fields(RoutingRules)), list_known=True)
    values: dict[str, RuleValue] = {}
    for key in _TIER_RULES:
        if key not in f.data:
            continue
        value = f.data[key]
        if value is None and key in NULLABLE:
            values[key] = None
        elif (tier := f.peek(key, str)) not in names:
            f.fail(key, f"{value!r} is not a tier of this stack ({', '.join(names)})")
        else:
            values[key] = tier
    for key, lo in _LOWEST.items():
        if key not in f.data or (f.data[key] is None and key in NULLABLE):
            continue
        value = f.data[key]
        if not is_int(value) or value < lo:
            f.fail(key, f"expected a whole number >= {lo}, found {value!r}")
        values[key] = value
    if "chars_per_token" in f.data:
        value = f.data["chars_per_token"]
        if not is_number(value) or not 0.5 <= value <= 16:
            f.fail("chars_per_token", f"expected a number from 0.5 to 16, found {value!r}")
        values["chars_per_token"] = float(value)
    return replace(rules, **values)


def fit_to_tiers(rules: RoutingRules, tier_names: Iterable[str]) -> RoutingRules:
    """``rules`` with every reference to a tier that is gone replaced by its default
    (a tier removed by `setup --remove` never leaves a stack.yaml that cannot be read)."""
    names = list(tier_names)
    defaults = default_rules(names)
    changes: dict[str, RuleValue] = {}
    for key in ("default_tier", "tool_tier", "long_tier"):
        value = getattr(rules, key)
        if value is not None and value not in names:
            changes[key] = getattr(defaults, key)
    return replace(rules, **changes) if changes else rules


def dump_routing(rules: RoutingRules, tier_names: Iterable[str]) -> JSONObject:
    """The ``routing:`` section for stack.yaml: only the rules that differ from the
    defaults, so a default (say, the long tier) follows the tiers when they change."""
    defaults = default_rules(tier_names).as_dict()
    return {k: v for k, v in rules.as_dict().items() if defaults[k] != v}


def prompt_limit(context_window: int | None, rules: RoutingRules) -> int | None:
    """The longest prompt (estimated tokens) a tier with this window is given."""
    if context_window is None:
        return None
    return max(1, context_window - rules.output_reserve_tokens)


def _text_chars(value: object) -> tuple[int, int]:
    """(characters, non-ASCII characters) of every string inside ``value``."""
    if isinstance(value, str):
        if value.isascii():
            return len(value), 0
        extra = len(value.encode("utf-8")) - len(value)  # 1-3 extra bytes per non-ASCII char
        wide = min(len(value), (extra + 1) // 2)
        return len(value), wide
    total = wide = 0
    # A request's parsed JSON, of any shape: isinstance() narrows to containers of unknowns,
    # and a cast per item would cost time on the front door's hot path.
    if isinstance(value, Mapping):
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
            if key in _MEDIA_KEYS:
                continue
            total += len(key) if isinstance(key, str) else 0  # tool schemas: property names
            n, w = _text_chars(item)  # pyright: ignore[reportUnknownArgumentType]
            total += n
            wide += w
    elif isinstance(value, list | tuple):
        for item in value:  # pyright: ignore[reportUnknownVariableType]
            n, w = _text_chars(item)  # pyright: ignore[reportUnknownArgumentType]
            total += n
            wide += w
    return total, wide


def estimate_tokens(request: Mapping[str, object], chars_per_token: float = DEFAULT_CHARS_PER_TOKEN) -> int:
    """A fast upper-leaning estimate of a request's prompt tokens.

    Reads OpenAI chat requests (``messages``, ``tools``), Anthropic Messages requests
    (``system`` too) and Responses API requests (``input``, ``instructions``); image,
    audio and file payloads are not counted.
    """
    messages: object = request.get("messages") or []
    total = wide = 0
    for part in (messages, request.get("system"), request.get("tools"), request.get("input"),
                 request.get("instructions")):
        n, w = _text_chars(part)
        total += n
        wide += w
    count = len(messages) if isinstance(messages, list) else 0  # pyright: ignore[reportUnknownArgumentType]
    return int((total - wide) / chars_per_token + wide) + _PER_MESSAGE_TOKENS * (count + 1)


def has_tools(request: Mapping[str, object]) -> bool:
    """True when the request offers tools the model may call."""
    tools = request.get("tools") or request.get("functions")
    if not tools:
        return False
    choice = request.get("tool_choice")
    return not (choice == "none" or (isinstance(choice, Mapping)
                                     and choice.get("type") == "none"))  # pyright: ignore[reportUnknownMemberType]


def _candidate(request: Mapping[str, object], rules: RoutingRules) -> tuple[str, str]:
    return (rules.tool_tier, "tools") if has_tools(request) else (rules.default_tier, "default")


def _limits(tier: str, rules: RoutingRules, context_windows: Mapping[str, int | None]) -> list[int]:
    if rules.long_tier is None or rules.long_tier == tier:
        return []
    limits = [rules.long_prompt_tokens] if rules.long_prompt_tokens is not None else []
    window_limit = prompt_limit(context_windows.get(tier), rules)
    return [*limits, window_limit] if window_limit is not None else limits


def decide(request: Mapping[str, object], rules: RoutingRules, context_windows: Mapping[str, int | None],
           *, tokens: int | None = None) -> Decision:
    """The tier an ``auto`` request goes to, and why.

    ``tokens`` is a real count of the prompt when the caller has one; otherwise the
    fast estimate decides.
    """
    counted = tokens if tokens is not None else estimate_tokens(request, rules.chars_per_token)
    tier, reason = _candidate(request, rules)
    if any(counted > limit for limit in _limits(tier, rules, context_windows)):
        return Decision(rules.long_tier or tier, "long-prompt", counted)
    return Decision(tier, reason, counted)


def is_borderline(request: Mapping[str, object], rules: RoutingRules,
                  context_windows: Mapping[str, int | None], *, estimated: int | None = None) -> bool:
    """True when the estimate is too close to a limit to trust: count the tokens for real."""
    if estimated is None:
        estimated = estimate_tokens(request, rules.chars_per_token)
    tier, _ = _candidate(request, rules)
    return any(limit / BORDERLINE_FACTOR <= estimated <= limit * BORDERLINE_FACTOR
               for limit in _limits(tier, rules, context_windows))


def context_window_fallbacks(tier_names: Iterable[str], context_windows: Mapping[str, int | None],
                             rules: RoutingRules, *, cloud: str | None = None) -> list[dict[str, list[str]]]:
    """LiteLLM ``context_window_fallbacks``: too long for a tier -> long tier -> cloud.

    Only tiers with a known window get a chain; the long tier's chain is the cloud.
    """
    out: list[dict[str, list[str]]] = []
    for name in tier_names:
        if context_windows.get(name) is None:
            continue
        chain: list[str | None] = [rules.long_tier] if rules.long_tier not in (None, name) else []
        if cloud:
            chain.append(cloud)
        if chain:
            out.append({name: [c for c in chain if c is not None]})
    return out
