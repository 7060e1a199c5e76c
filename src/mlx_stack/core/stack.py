"""The stack model: what runs (tiers, fallback order, gateway). Pure, no I/O.

``stack.yaml`` is the single source of truth; everything the processes need
(vllm-mlx command lines, the LiteLLM config) is rendered from a :class:`Stack`.
:func:`parse_stack` validates a loaded mapping and names the offending field;
:func:`dump_stack` gives the mapping back (``parse(dump(s)) == s``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, cast

from mlx_stack.core.aliases import pattern_problem
from mlx_stack.core.memory_plan import ServingProfile, dump_profile, parse_profile
from mlx_stack.core.routing import RoutingRules, dump_routing, fit_to_tiers, parse_routing
from mlx_stack.core.validate import Fields, in_file
from mlx_stack.errors import MlxStackError, NotFoundError, StateError
from mlx_stack.json_types import JSON, JSONObject

if TYPE_CHECKING:  # (imported where a stack has a cluster tier or peers: `status` rarely pays)
    from mlx_stack.core.cluster import Cluster
    from mlx_stack.core.peers import Peer

SCHEMA = 1
GATEWAY = "gateway"  # the service name of the front door on the gateway port
LITELLM = "litellm"  # the service name of LiteLLM (internal port; only with a cloud key)
CLOUD = "cloud"  # the model name of the optional OpenRouter fallback
RESERVED_NAMES = frozenset({GATEWAY, LITELLM, CLOUD, "auto", "all"})
DEFAULT_CLOUD_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_CLOUD_MODEL = "openai/gpt-4o-mini"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
RESIDENT, ON_DEMAND = "resident", "on-demand"
MODES = (RESIDENT, ON_DEMAND)
DEFAULT_IDLE_UNLOAD_S = 600  # an on-demand tier without `idle-unload` sleeps after 10 min unused
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h)\s*$")
_DURATION_S = {"s": 1, "m": 60, "h": 3600}
# What a tier serves (issue 25): a chat model (every route but retrieval), or a retrieval
# model in a process of its own: an encoder on /v1/embeddings, a cross-encoder on /v1/rerank.
CHAT, EMBEDDING, RERANK = "chat", "embedding", "rerank"
KINDS = (CHAT, EMBEDDING, RERANK)
# Model names clients send out of habit, routed to the stack's retrieval tier of that kind
# unless a tier lists its own `aliases` (OpenAI's embedding names; Cohere's and Jina's).
DEFAULT_ALIASES = {
    EMBEDDING: ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"),
    RERANK: ("rerank-v3.5", "rerank-english-v3.0", "jina-reranker-v2-base-multilingual"),
}


def parse_duration(text: str) -> int | None:
    """``30s`` / ``10m`` / ``2h`` -> seconds (at least 1); None when not such a duration."""
    m = _DURATION.match(str(text).lower())
    if not m or int(m.group(1)) <= 0:
        return None
    return int(m.group(1)) * _DURATION_S[m.group(2)]


def format_duration(seconds: int) -> str:
    """The shortest exact spelling: 600 -> ``10m``, 7200 -> ``2h``, 45 -> ``45s``."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


_HUB_SNAPSHOT = re.compile(r"^(?P<cache>.+)/models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/[^/]+/?$")


def hub_cache_of(path: str) -> tuple[str, str] | None:
    """(repo id, cache folder) when ``path`` is a snapshot folder of a Hugging Face hub cache."""
    m = _HUB_SNAPSHOT.match(path)
    return (f"{m.group('org')}/{m.group('name')}", m.group("cache")) if m else None


@dataclass(frozen=True)
class Tier:
    """One vllm-mlx server: exposed to clients under ``name``."""

    name: str
    model: str  # the real model id (catalog id or hub repo), shown by `status`
    path: str  # local model directory; `up` never downloads
    port: int
    tool_call_parser: str | None = None  # also switches on auto tool choice
    reasoning_parser: str | None = None
    context_window: int | None = None
    extra_args: tuple[str, ...] = ()  # further vllm-mlx flags, passed as is
    # The runtime caps (core.memory_plan); None in a stack.yaml written before them.
    serving: ServingProfile | None = None
    # `resident` (runs from `up` to `down`) or `on-demand` (the front door starts it on the
    # first request that needs it and stops it after `idle_unload_s` without requests).
    mode: str = RESIDENT
    idle_unload_s: int | None = None  # on-demand only; None: DEFAULT_IDLE_UNLOAD_S
    kind: str = CHAT  # chat | embedding | rerank
    aliases: tuple[str, ...] | None = None  # retrieval only; None: DEFAULT_ALIASES[kind]
    max_input_tokens: int | None = None  # retrieval only: --embedding-max-length
    # `engine: mlx-distributed` (issue 26): mlx.launch runs mlx_lm.server over these hosts.
    cluster: Cluster | None = None

    @property
    def retrieval(self) -> bool:
        return self.kind != CHAT

    @property
    def engine(self) -> str:
        from mlx_stack.core.cluster import MLX_DISTRIBUTED, VLLM_MLX

        return MLX_DISTRIBUTED if self.cluster is not None else VLLM_MLX

    @property
    def served_model(self) -> str:
        """The `model` this tier's server expects: the tier name for chat (served-model-name);
        the model folder for an encoder (vllm-mlx 0.6 checks the --embedding-model string);
        the hub repo id for a reranker (it loads one only through the hub cache); the model
        folder for a cluster tier (mlx_lm.server looks any other name up on the hub)."""
        if self.kind == EMBEDDING or self.cluster is not None:
            return self.path
        if self.kind == RERANK:
            found = hub_cache_of(self.path)
            return found[0] if found else self.model
        return self.name

    @property
    def model_aliases(self) -> tuple[str, ...]:
        if not self.retrieval:
            return ()
        return self.aliases if self.aliases is not None else DEFAULT_ALIASES[self.kind]

    @property
    def on_demand(self) -> bool:
        return self.mode == ON_DEMAND

    @property
    def idle_unload(self) -> int:
        """Seconds without requests before an on-demand tier is stopped."""
        return self.idle_unload_s or DEFAULT_IDLE_UNLOAD_S


@dataclass(frozen=True)
class Gateway:
    """The front door's address, TLS files and peer preference (stack.yaml ``gateway:``)."""

    host: str = "127.0.0.1"
    port: int = 4000
    # Issue 26: TLS for LAN exposure (both or neither; checked when the front door starts)
    # and whether a tier peers serve too goes to a peer first on a tie (else this node).
    tls_cert: str | None = None
    tls_key: str | None = None
    prefer_peers: bool = False

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


@dataclass(frozen=True)
class Cloud:
    """The OpenRouter group, used only when an ``openrouter-key`` is stored."""

    model: str = DEFAULT_CLOUD_MODEL
    base_url: str = DEFAULT_CLOUD_BASE_URL


@dataclass(frozen=True)
class Stack:
    """stack.yaml, parsed: the tiers, the fallback order, the front door and the cloud."""

    tiers: tuple[Tier, ...]
    fallback_order: tuple[str, ...]
    gateway: Gateway = field(default_factory=Gateway)
    cloud: Cloud = field(default_factory=Cloud)
    # The optional `routing:` section (rules of the `auto` model name, see core.routing);
    # None means the defaults derived from the tiers.
    routing: RoutingRules | None = None
    # What all tiers' serving profiles together may plan (MB); None: from config + hardware.
    memory_budget_mb: int | None = None
    # The optional `aliases:` section: (glob pattern, tier) in order, before the built-in
    # ones (core.aliases); `default_tier`: where a model name nothing matches goes (None: 404).
    aliases: tuple[tuple[str, str], ...] = ()
    default_tier: str | None = None
    peers: tuple[Peer, ...] = ()  # other stacks' front doors this one also serves (issue 26)

    @property
    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]

    @property
    def chat_tiers(self) -> list[str]:
        """The tiers that answer chat (routing, `auto`, fallback); not the retrieval ones."""
        return [t.name for t in self.tiers if not t.retrieval]

    @property
    def resident_tiers(self) -> list[str]:
        """The tiers `up` starts (on-demand tiers sleep until a request needs them)."""
        return [t.name for t in self.tiers if not t.on_demand]

    @property
    def services(self) -> list[str]:
        """Every process of the stack: the tiers, then the gateway."""
        return [*self.tier_names, GATEWAY]

    def tier(self, name: str) -> Tier:
        for t in self.tiers:
            if t.name == name:
                return t
        raise NotFoundError(
            f"unknown tier {name!r}",
            hint="tiers in this stack: " + ", ".join(self.tier_names),
        )

    def with_tier(self, tier: Tier) -> Stack:
        """A copy with ``tier`` replaced (same name) or appended."""
        others = [t for t in self.tiers if t.name != tier.name]
        if len(others) == len(self.tiers):
            order = self.fallback_order if tier.retrieval else (*self.fallback_order, tier.name)
            return replace(self, tiers=(*self.tiers, tier), fallback_order=order)
        tiers = tuple(tier if t.name == tier.name else t for t in self.tiers)
        return replace(self, tiers=tiers)


_HINT = "fix the file by hand, or write a new one with `mlx-stack setup`"


def _port(f: Fields) -> int:
    value = f.get("port", int)
    if not 1024 <= value <= 65535:
        f.fail("port", f"{value} is not a port from 1024 to 65535")
    return value


_TIER_FIELDS = ("name", "model", "path", "port", "tool_call_parser", "reasoning_parser",
                "context_window", "extra_args", "serving", "mode", "idle-unload", "kind", "aliases",
                "max_input_tokens", "engine", "hosts", "backend", "sharding", "ring_port")


def _parse_tier(top: Fields, raw: object, index: int, source: str) -> Tier:
    if not isinstance(raw, dict):
        top.fail(f"tiers[{index}]", "expected a mapping")
    f = top.nested(f"tiers[{index}]", cast("dict[str, object]", raw))
    f.unknown(_TIER_FIELDS)
    name = f.get("name", str)
    if not _NAME.match(name) or name in RESERVED_NAMES:
        f.fail("name", f"{name!r} is not a valid tier name "
               "(lowercase letters, digits, '-'; not gateway/litellm/cloud/auto/all)")
    ctx = f.optional("context_window", int)
    if ctx is not None and ctx <= 0:
        f.fail("context_window", "must be positive")
    given = cast("list[object]", f.optional("extra_args", list, []))
    extra = [a for a in given if isinstance(a, str)]
    if len(extra) != len(given):
        f.fail("extra_args", "expected a list of strings")
    mode = f.optional("mode", str, RESIDENT)
    if mode not in MODES:
        f.fail("mode", f"{mode!r} is not a mode (resident or on-demand)")
    idle = f.optional("idle-unload", (str, int))
    idle_s = None
    if idle is not None:
        idle_s = idle if isinstance(idle, int) and idle > 0 else parse_duration(str(idle))
        if idle_s is None:
            f.fail("idle-unload", f"{idle!r} is not a duration like 30s, 10m or 2h")
        if mode != ON_DEMAND:
            f.fail("idle-unload", "only an on-demand tier unloads when idle (add `mode: on-demand`)")
    kind = f.optional("kind", str, CHAT)
    if kind not in KINDS:
        f.fail("kind", f"{kind!r} is not a kind (chat, embedding or rerank)")
    raw_aliases = cast("list[object] | None", f.optional("aliases", list))
    aliases = None
    if raw_aliases is not None:
        aliases = tuple(a for a in raw_aliases if isinstance(a, str) and a)
        if len(aliases) != len(raw_aliases) or kind == CHAT:
            f.fail("aliases", "expected a list of model names, on an embedding or rerank tier")
    max_in = f.optional("max_input_tokens", int)
    if max_in is not None and (max_in <= 0 or kind == CHAT):
        f.fail("max_input_tokens", "must be positive, on an embedding or rerank tier")
    cluster = _parse_cluster(f, kind, mode)
    return Tier(
        name=name,
        model=f.get("model", str),
        path=f.get("path", str),
        port=_port(f),
        tool_call_parser=f.optional("tool_call_parser", str),
        reasoning_parser=f.optional("reasoning_parser", str),
        context_window=ctx,
        extra_args=tuple(extra),
        serving=parse_profile(f.data["serving"], f.where("serving."), source) if f.has("serving") else None,
        mode=mode,
        idle_unload_s=idle_s,
        kind=kind,
        aliases=aliases,
        max_input_tokens=max_in,
        cluster=cluster,
    )


def _parse_cluster(f: Fields, kind: str, mode: str) -> Cluster | None:
    """The `engine: mlx-distributed` fields; `hosts` inline, or the path of a hostfile
    (read by services.stack_store: core reads no file)."""
    if not any(f.has(key) for key in ("engine", "hosts", "backend", "sharding", "ring_port")):
        return None  # a vllm-mlx tier
    from mlx_stack.core.cluster import (
        BACKENDS,
        DEFAULT_RING_PORT,
        ENGINES,
        SHARDINGS,
        TENSOR,
        VLLM_MLX,
        Cluster,
        parse_hosts,
    )

    engine = f.optional("engine", str, VLLM_MLX)
    if engine not in ENGINES:
        f.fail("engine", f"{engine!r} is not an engine ({' or '.join(ENGINES)})")
    if engine == VLLM_MLX:
        for key in ("hosts", "backend", "sharding", "ring_port"):
            if f.has(key):
                f.fail(key, "only a tier with `engine: mlx-distributed` has it")
        return None
    if kind != CHAT or mode != RESIDENT:
        f.fail("engine", "an mlx-distributed tier is a resident chat tier")
    backend = f.optional("backend", str, "ring")
    if backend not in BACKENDS:
        f.fail("backend", f"{backend!r} is not a backend ({' or '.join(BACKENDS)})")
    sharding = f.optional("sharding", str, TENSOR)
    if sharding not in SHARDINGS:
        f.fail("sharding", f"{sharding!r} is not a sharding (tensor or pipeline)")
    ring_port = f.optional("ring_port", int, DEFAULT_RING_PORT)
    if not 1024 <= ring_port <= 65000:
        f.fail("ring_port", f"{ring_port} is not a port from 1024 to 65000")
    if not f.has("hosts"):
        f.fail("hosts", "an mlx-distributed tier needs its hosts (a list, or the path of a hostfile)")
    raw = f.data["hosts"]
    if isinstance(raw, str):
        if not raw.strip():
            f.fail("hosts", "expected a list of hosts or the path of a hostfile")
        return Cluster((), backend, sharding, raw, ring_port)
    hosts, envs = parse_hosts(raw, f, "hosts", backend)
    return Cluster(hosts, backend, sharding, None, ring_port, envs)


def parse_stack(data: object, source: str = "stack.yaml") -> Stack:
    """Validate a mapping loaded from stack.yaml; errors name ``source`` and the field."""
    f = Fields(data, error=in_file(source, StateError, _HINT), top="top level")
    schema = f.data.get("schema")
    if schema != SCHEMA:
        raise StateError(
            f"{source}: unsupported schema {schema!r} (this mlx-stack reads schema {SCHEMA})",
            hint="upgrade mlx-stack, or write a new stack with `mlx-stack setup`",
        )
    f.unknown(("schema", "tiers", "fallback_order", "gateway", "cloud", "routing", "memory_budget_mb",
               "aliases", "default_tier", "peers"))
    raw_tiers = cast("list[object]", f.get("tiers", list))
    if not raw_tiers:
        f.fail("tiers", "at least one tier is needed")
    tiers = tuple(_parse_tier(f, t, i, source) for i, t in enumerate(raw_tiers))
    names = [t.name for t in tiers]
    for i, name in enumerate(names):
        if name in names[:i]:
            f.fail(f"tiers[{i}].name", f"duplicate tier {name!r}")

    gw = f.nested("gateway", f.optional("gateway", dict, {}))
    gw.unknown(("host", "port", "tls-cert", "tls-key", "prefer-peers"))
    gateway = Gateway(
        host=gw.optional("host", str, "127.0.0.1"),
        port=_port(gw) if "port" in gw.data else 4000,
        tls_cert=gw.optional("tls-cert", str),
        tls_key=gw.optional("tls-key", str),
        prefer_peers=gw.optional("prefer-peers", bool, False),
    )
    ports: dict[int, str] = {gateway.port: "gateway.port"}
    for i, t in enumerate(tiers):
        if t.port in ports:
            f.fail(f"tiers[{i}].port", f"port {t.port} is also used by {ports[t.port]}")
        ports[t.port] = f"tiers[{i}].port"
    for i, t in enumerate(tiers):
        for port in t.cluster.ring_ports if t.cluster is not None else ():
            if port in ports:
                f.fail(f"tiers[{i}].ring_port", f"the ring's port {port} is also used by {ports[port]}")
            ports[port] = f"tiers[{i}].ring_port"

    chat = [t.name for t in tiers if not t.retrieval]
    listed = cast("list[object]", f.optional("fallback_order", list, chat))
    order: list[str] = []
    for i, name in enumerate(listed):
        if not isinstance(name, str) or name not in names:
            f.fail(f"fallback_order[{i}]", f"{name!r} is not a tier of this stack")
        if name not in chat:
            f.fail(f"fallback_order[{i}]", f"{name!r} is a retrieval tier (only chat tiers fall back)")
        order.append(name)
    if len(set(order)) != len(order):
        f.fail("fallback_order", "a tier is listed twice")

    cl = f.nested("cloud", f.optional("cloud", dict, {}))
    cloud = Cloud(
        model=cl.optional("model", str, DEFAULT_CLOUD_MODEL),
        base_url=cl.optional("base_url", str, DEFAULT_CLOUD_BASE_URL),
    )
    routing = parse_routing(f.data["routing"], chat, source) if f.has("routing") else None
    budget = f.optional("memory_budget_mb", int)
    if budget is not None and budget <= 0:
        f.fail("memory_budget_mb", "must be positive")
    aliases, default_tier = _parse_aliases(f, names)
    return Stack(tiers=tiers, fallback_order=tuple(order), gateway=gateway, cloud=cloud, routing=routing,
                 memory_budget_mb=budget, aliases=aliases, default_tier=default_tier,
                 peers=_parse_peers(f))


def _parse_peers(f: Fields) -> tuple[Peer, ...]:
    raw = cast("list[object]", f.optional("peers", list, []))
    if not raw:
        return ()
    from mlx_stack.core.peers import Peer, name_problem, parse_url

    peers: list[Peer] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            f.fail(f"peers[{i}]", "expected a mapping with name and url")
        pf = f.nested(f"peers[{i}]", cast("dict[str, object]", entry))
        pf.unknown(("name", "url", "ca_file"))
        name, url = pf.get("name", str), pf.get("url", str)
        problem = name_problem(name)
        if problem is not None:
            pf.fail("name", problem)
        try:
            url = parse_url(url)
        except MlxStackError as exc:
            pf.fail("url", exc.message)
        if any(p.name == name or p.url == url for p in peers):
            pf.fail("name", f"peer {name!r} ({url}) is listed twice")
        peers.append(Peer(name, url, pf.optional("ca_file", str)))
    return tuple(peers)


def _parse_aliases(f: Fields, names: list[str]) -> tuple[tuple[tuple[str, str], ...], str | None]:
    raw = cast("dict[object, object]", f.optional("aliases", dict, {}))
    aliases: list[tuple[str, str]] = []
    for pattern, tier in raw.items():
        where = f"aliases.{pattern}"
        if not isinstance(pattern, str):
            f.fail(where, "expected a glob pattern")
        problem = pattern_problem(pattern)
        if problem is not None:
            f.fail(where, problem)
        if not isinstance(tier, str) or tier not in names:
            f.fail(where, f"{tier!r} is not a tier of this stack")
        aliases.append((pattern, tier))
    default_tier = f.optional("default_tier", str)
    if default_tier is not None and default_tier not in names:
        f.fail("default_tier", f"{default_tier!r} is not a tier of this stack")
    return tuple(aliases), default_tier


def dump_stack(stack: Stack) -> JSONObject:
    """The mapping written to stack.yaml (no secrets ever live here)."""
    tiers: list[JSON] = []
    for t in stack.tiers:
        entry: JSONObject = {"name": t.name, "model": t.model, "path": t.path, "port": t.port}
        for key in ("tool_call_parser", "reasoning_parser", "context_window"):
            if getattr(t, key) is not None:
                entry[key] = getattr(t, key)
        if t.extra_args:
            entry["extra_args"] = list(t.extra_args)
        if t.on_demand:
            entry["mode"] = ON_DEMAND
            if t.idle_unload_s is not None:
                entry["idle-unload"] = format_duration(t.idle_unload_s)
        if t.retrieval:
            entry["kind"] = t.kind
            if t.aliases is not None:
                entry["aliases"] = list(t.aliases)
            if t.max_input_tokens is not None:
                entry["max_input_tokens"] = t.max_input_tokens
        if t.cluster is not None:
            from mlx_stack.core.cluster import DEFAULT_RING_PORT, MLX_DISTRIBUTED, dump_hosts

            c = t.cluster
            entry.update(engine=MLX_DISTRIBUTED, backend=c.backend, sharding=c.sharding,
                         hosts=cast("JSON", dump_hosts(c)))
            if c.ring_port != DEFAULT_RING_PORT:
                entry["ring_port"] = c.ring_port
        if t.serving is not None:
            entry["serving"] = dump_profile(t.serving)
        tiers.append(entry)
    data: JSONObject = {
        "schema": SCHEMA,
        "gateway": _dump_gateway(stack.gateway),
        "fallback_order": list(stack.fallback_order),
        "tiers": tiers,
    }
    if stack.peers:
        data["peers"] = [{"name": p.name, "url": p.url, **({"ca_file": p.ca_file} if p.ca_file else {})}
                         for p in stack.peers]
    if stack.memory_budget_mb is not None:
        data["memory_budget_mb"] = stack.memory_budget_mb
    if stack.cloud != Cloud():
        data["cloud"] = {"model": stack.cloud.model, "base_url": stack.cloud.base_url}
    if stack.routing is not None:
        data["routing"] = dump_routing(fit_to_tiers(stack.routing, stack.chat_tiers), stack.chat_tiers)
    # Aliases of a tier that is gone are dropped (`setup --remove` leaves a readable file).
    aliases: JSONObject = {p: t for p, t in stack.aliases if t in stack.tier_names}
    if aliases:
        data["aliases"] = aliases
    if stack.default_tier is not None and stack.default_tier in stack.tier_names:
        data["default_tier"] = stack.default_tier
    return data


def _dump_gateway(gw: Gateway) -> JSONObject:
    out: JSONObject = {"host": gw.host, "port": gw.port}
    if gw.tls_cert is not None:
        out["tls-cert"] = gw.tls_cert
    if gw.tls_key is not None:
        out["tls-key"] = gw.tls_key
    if gw.prefer_peers:
        out["prefer-peers"] = True
    return out
