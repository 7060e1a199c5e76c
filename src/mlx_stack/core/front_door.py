"""What the front door routes, and in which order it tries the tiers (pure, no I/O).

The front door (:mod:`mlx_stack.gateway`) reads one JSON document, rendered from the stack
by :mod:`mlx_stack.core.gateway_config` and parsed here: each tier's name, real model,
URL, context window and tokenizer folder; the fallback order; the ``auto`` rules; and the
cloud (LiteLLM on an internal port) when a cloud key is stored. It re-reads the file when
it changes, so `setup --add/--remove` and `config set routing.*` reach a running front
door without a restart.

:func:`plan` turns one request into the ordered list of upstreams to try:

- ``auto`` picks a tier with :func:`mlx_stack.core.routing.decide`;
- a tier name goes to that tier, then to the others in the fallback order;
- any other name goes to the tier of the first alias whose glob matches it
  (:mod:`mlx_stack.core.aliases`), else to ``default_tier`` when set, else it is a 404;
- a prompt too long for a tier's window skips that tier (the long tier goes first);
- the cloud, when configured, comes last, and alone when the request names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from mlx_stack.core.aliases import match as match_alias
from mlx_stack.core.routing import AUTO, RoutingRules, decide, estimate_tokens, parse_routing, prompt_limit
from mlx_stack.core.stack import CLOUD
from mlx_stack.json_types import JSONObject, as_list, as_object
from mlx_stack.paths import ROUTES_FILE

if TYPE_CHECKING:  # (imported where there are peers)
    from mlx_stack.core.peers import Peer

ROUTES_SCHEMA = 1
# An estimate within this factor of a tier's limit is counted with the tier's tokenizer.
BORDERLINE_FACTOR = 1.5


@dataclass(frozen=True)
class Upstream:
    """One place the front door sends requests to: a local tier, a peer's or the cloud."""

    name: str  # the tier name (served-model-name) or "cloud"
    model: str  # the real model id, named in x-mlx-stack-model
    url: str  # http://127.0.0.1:PORT (no /v1)
    context_window: int | None = None
    tokenizer: str | None = None  # the tier's model folder (tokenizer.json inside)
    # On-demand tiers: seconds without requests before the front door stops it; None for
    # resident tiers (and the cloud), which it never starts or stops.
    idle_unload_s: int | None = None
    planned_mb: int | None = None  # its serving plan (eviction frees about this much)
    # Retrieval tiers (issue 25; core.retrieval routes them): kind embedding | rerank, the
    # model name their server expects, the names clients may use for them, the input limit.
    kind: str = "chat"
    served: str | None = None
    aliases: tuple[str, ...] = ()
    max_input_tokens: int | None = None
    # The API paths this upstream answers; empty: every one (vllm-mlx). A cluster tier
    # (mlx_lm.server) answers only chat and text completions (core.cluster.ENDPOINTS).
    endpoints: tuple[str, ...] = ()

    def answers(self, path: str) -> bool:
        return not self.endpoints or path in self.endpoints

    @property
    def sent_model(self) -> str:
        """The `model` a request carries upstream."""
        return self.served or self.name

    @property
    def on_demand(self) -> bool:
        return self.idle_unload_s is not None


@dataclass(frozen=True)
class Routes:
    """Everything the front door routes by, read from its routes file."""

    tiers: dict[str, Upstream]
    fallback_order: tuple[str, ...]
    rules: RoutingRules
    cloud: Upstream | None = None
    # (glob pattern, tier) in the order they are tried: the user's, then the built-in ones.
    aliases: tuple[tuple[str, str], ...] = ()
    default_tier: str | None = None  # where a name nothing matches goes (None: 404)
    peers: tuple[Peer, ...] = ()  # other stacks' front doors (issue 26; core.peers)
    prefer_peers: bool = False

    @property
    def model_ids(self) -> list[str]:
        """What ``/v1/models`` lists: the tiers, ``auto``, the cloud when configured, then
        the alias patterns (``aliases`` says which tier each one names)."""
        return [*self.tiers, AUTO, *([CLOUD] if self.cloud else []), *(p for p, _ in self.aliases)]

    @property
    def windows(self) -> dict[str, int | None]:
        return {n: t.context_window for n, t in self.tiers.items()}


@dataclass(frozen=True)
class Plan:
    """One request's route: the first choice and the candidates after it."""

    requested: str
    routed: str  # the first choice (what `auto` or the name chose)
    reason: str  # direct | alias | default-tier | auto-default | auto-tools | auto-long-prompt | auto-session
    chain: tuple[str, ...]  # upstream names to try, in order ("cloud" last if present)
    tokens: int  # the prompt size used to decide
    alias: str | None = None  # the alias pattern that matched the requested name, if any


class UnknownModel(Exception):
    """The request names a model this stack does not serve (a client error: 404)."""


def _upstream(raw: object, source: str) -> Upstream:
    entry = as_object(raw)
    name, url = (entry.get("name"), entry.get("url")) if entry is not None else (None, None)
    if entry is None or not isinstance(name, str) or not isinstance(url, str):
        raise ValueError(f"{source}: malformed upstream entry {raw!r}")
    window = entry.get("context_window")
    tok = entry.get("tokenizer")
    od = as_object(entry.get("on_demand")) or {}
    idle, planned = od.get("idle_unload_s"), od.get("planned_mb")
    kind, served, max_in = entry.get("kind"), entry.get("served"), entry.get("max_input_tokens")
    aliases = tuple(a for a in as_list(entry.get("aliases")) if isinstance(a, str))
    endpoints = tuple(e for e in as_list(entry.get("endpoints")) if isinstance(e, str))
    return Upstream(name, str(entry.get("model") or name), url.rstrip("/"),
                    window if isinstance(window, int) and window > 0 else None,
                    tok if isinstance(tok, str) else None,
                    idle if isinstance(idle, int) and idle > 0 else None,
                    planned if isinstance(planned, int) and planned > 0 else None,
                    kind if isinstance(kind, str) else "chat",
                    served if isinstance(served, str) else None, aliases,
                    max_in if isinstance(max_in, int) and max_in > 0 else None, endpoints)


def parse_routes(doc: object, source: str = ROUTES_FILE) -> Routes:
    """The inverse of :func:`mlx_stack.core.gateway_config.render_routes`; ValueError naming
    ``source`` when malformed."""
    top = as_object(doc)
    if not (top is not None and top.get("schema") == ROUTES_SCHEMA and as_list(top.get("tiers"))):
        raise ValueError(f"{source}: not an mlx-stack routes document (schema {ROUTES_SCHEMA})")
    tiers = {u.name: u for u in (_upstream(t, source) for t in as_list(top.get("tiers")))}
    listed = as_list(top.get("fallback_order"))
    order = [n for n in listed if isinstance(n, str) and n in tiers] or list(tiers)
    try:
        rules = parse_routing(top.get("rules"), list(tiers), source)
    except Exception as exc:  # StateError: say it as a ValueError, one family for the reader
        raise ValueError(str(exc)) from None
    cloud = _upstream(top["cloud"], source) if top.get("cloud") else None
    aliases: list[tuple[str, str]] = []
    for raw in as_list(top.get("aliases")):
        entry = as_object(raw) or {}
        pattern, tier = entry.get("pattern"), entry.get("tier")
        if not (isinstance(pattern, str) and pattern and isinstance(tier, str) and tier in tiers):
            raise ValueError(f"{source}: malformed alias entry {raw!r}")
        aliases.append((pattern, tier))
    default_tier = top.get("default_tier")
    if default_tier is not None and default_tier not in tiers:
        raise ValueError(f"{source}: default_tier {default_tier!r} is not a tier")
    return Routes(tiers, tuple(order), rules, cloud, tuple(aliases),
                  default_tier if isinstance(default_tier, str) else None,
                  _peers(top.get("peers"), source), top.get("prefer_peers") is True)


def _peers(raw: object, source: str) -> tuple[Peer, ...]:
    items = as_list(raw)
    if not items:
        return ()
    from mlx_stack.core.peers import Peer

    out: list[Peer] = []
    for item in items:
        entry = as_object(item) or {}
        name, url, ca = entry.get("name"), entry.get("url"), entry.get("ca_file")
        if not (isinstance(name, str) and isinstance(url, str)):
            raise ValueError(f"{source}: malformed peer entry {item!r}")
        out.append(Peer(name, url, ca if isinstance(ca, str) else None))
    return tuple(out)


def unanswered_message(path: str, chain: tuple[str, ...], routes: Routes) -> str:
    """Why no tier of ``chain`` takes a request to ``path``: each tier and what it answers."""
    served = "; ".join(f"tier {n} answers only {', '.join(routes.tiers[n].endpoints)}"
                       for n in chain if n in routes.tiers and routes.tiers[n].endpoints)
    return (f"{path} is not served by the tiers this request can go to: {served} "
            "(a cluster tier runs mlx_lm.server; send it OpenAI chat completions, or name a tier that "
            "answers this API)")


def is_near_a_limit(tokens: int, routes: Routes) -> bool:
    """True when the estimate is too close to some tier's prompt limit to trust."""
    for name in routes.tiers:
        limit = prompt_limit(routes.windows.get(name), routes.rules)
        if limit is not None and limit / BORDERLINE_FACTOR <= tokens <= limit * BORDERLINE_FACTOR:
            return True
    return False


def plan(body: Mapping[str, object], routes: Routes, *, tokens: int | None = None) -> Plan:
    """The upstreams to try for one parsed request body, in order.

    ``tokens`` is a real count of the prompt when the caller has one (near a limit);
    otherwise the fast estimate decides. Raises :class:`UnknownModel`.
    """
    requested = body.get("model")
    if not isinstance(requested, str) or not requested:
        raise UnknownModel("the request names no model")
    rules = routes.rules
    alias: str | None = None
    counted = tokens if tokens is not None else estimate_tokens(body, rules.chars_per_token)
    cloud = routes.cloud
    if cloud is not None and requested in (CLOUD, cloud.model) and requested not in routes.tiers:
        return Plan(requested, CLOUD, "direct", (CLOUD,), counted)
    if requested == AUTO:
        decision = decide(body, rules, routes.windows, tokens=counted)
        routed, reason = decision.tier, f"auto-{decision.reason}"
    elif requested in routes.tiers and routes.tiers[requested].kind == "chat":
        routed, reason = requested, "direct"
    elif (hit := match_alias(requested, routes.aliases)) is not None:
        alias, routed = hit
        reason = "alias"
    elif routes.default_tier is not None:
        routed, reason = routes.default_tier, "default-tier"
    else:
        raise UnknownModel(f"model {requested!r} is not served here; models: "
                           + ", ".join(routes.model_ids))
    chain = [routed, *(n for n in routes.fallback_order if n != routed)]
    fits = [n for n in chain if _fits(counted, routes.windows.get(n), rules)]
    if fits and fits[0] != routed and rules.long_tier in fits:
        # Too long for the chosen tier: the long tier is the context-window fallback.
        fits.remove(rules.long_tier)
        fits.insert(0, rules.long_tier)
    if routes.cloud is not None:
        fits.append(CLOUD)
    return Plan(requested, routed, reason, tuple(fits), counted, alias)


def _fits(tokens: int, window: int | None, rules: RoutingRules) -> bool:
    limit = prompt_limit(window, rules)
    return limit is None or tokens <= limit


def too_long_message(tokens: int, routes: Routes, *, anthropic: bool) -> str:
    """The error for a prompt no tier can take, worded as each client family recognises it
    (Claude Code compacts on Anthropic's "prompt is too long"; OpenAI clients act on
    ``context_length_exceeded`` and its "maximum context length" message)."""
    windows = [w for w in routes.windows.values() if w is not None]
    limit = max((prompt_limit(w, routes.rules) or w for w in windows), default=0)
    if anthropic:
        return f"prompt is too long: {tokens} tokens > {limit} maximum"
    return (f"This model's maximum context length is {limit} tokens. However, your messages resulted in "
            f"{tokens} tokens. Please reduce the length of the messages.")


def check_rules(rules: RoutingRules, windows: Mapping[str, int | None]) -> str | None:
    """Why these rules would route everything away from the local tiers, or None.

    The output reserve must leave room for a prompt in the smallest known window, and
    ``long_prompt_tokens`` must be below the long tier's own limit.
    """
    known = {n: w for n, w in windows.items() if w is not None}
    if known:
        name, smallest = min(known.items(), key=lambda kv: kv[1])
        if rules.output_reserve_tokens >= smallest // 2:
            return (f"output-reserve-tokens {rules.output_reserve_tokens} leaves too little room for a "
                    f"prompt in tier {name}'s {smallest}-token window (must be below {smallest // 2})")
    if rules.long_prompt_tokens is not None and rules.long_tier is not None:
        limit = prompt_limit(windows.get(rules.long_tier), rules)
        if limit is not None and rules.long_prompt_tokens >= limit:
            return (f"long-prompt-tokens {rules.long_prompt_tokens} is not below the long tier "
                    f"{rules.long_tier}'s prompt limit ({limit})")
    return None


# What each endpoint cannot do without (the tiers answer some of these shapes with a
# 500, which would look like a server failure and send the request down the chain).
_REQUIRED = {
    "/v1/chat/completions": "messages",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "messages",
    "/v1/completions": "prompt",
    "/v1/embeddings": "input",
    "/v1/responses": "input",
    "/v1/rerank": "documents",
    "/rerank": "documents",
}


# Output limits: a positive integer when given (0 or -1 made every tier answer 500, which
# looked like a server failure). null is allowed where the dialect allows it.
_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
MAX_OUTPUT_TOKENS = 10_000_000


# vllm-mlx 0.6 refuses an output limit above its --max-request-tokens (32768 unless set)
# with a 400; agents ask for more (Claude Code sends 32000-64000). The front door lowers it.
TIER_OUTPUT_LIMIT = 32768


def clamp_output(body: Mapping[str, object], limit: int = TIER_OUTPUT_LIMIT) -> JSONObject | None:
    """``body`` with output limits above ``limit`` lowered to it, or None when none is."""
    over: list[str] = []
    for name in _LIMITS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            over.append(name)
    if not over:
        return None
    out = dict(body)
    for name in over:
        out[name] = limit
    return cast("JSONObject", out)


def shape_problem(path: str, body: Mapping[str, object]) -> str | None:
    """Why this request can never succeed (answered 400 by the front door), or None."""
    key = _REQUIRED.get(path)
    if key is None:
        return None
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        return "the request names no model" if model in (None, "") else "`model` must be a non-empty string"
    for name in _LIMITS:
        limit = body.get(name)
        if limit is None:
            if name == "max_tokens" and path == "/v1/messages" and name in body:
                return "`max_tokens` must be a positive integer"
            continue
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_OUTPUT_TOKENS:
            return f"`{name}` must be a positive integer (at most {MAX_OUTPUT_TOKENS:,})"
    value = body.get(key)
    if value is None or value == "" or value == []:
        return f"`{key}` is missing or empty"
    if key == "messages" and not (isinstance(value, list)
                                  and all(isinstance(m, dict) for m in value)):  # pyright: ignore[reportUnknownVariableType]
        return "`messages` must be a list of message objects"
    return None
