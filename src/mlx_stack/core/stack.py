"""The stack model: what runs (tiers, fallback order, gateway). Pure, no I/O.

``stack.yaml`` is the single source of truth; everything the processes need
(vllm-mlx command lines, the LiteLLM config) is rendered from a :class:`Stack`.
:func:`parse_stack` validates a loaded mapping and names the offending field;
:func:`dump_stack` gives the mapping back (``parse(dump(s)) == s``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, cast

from mlx_stack.core.memory_plan import ServingProfile, dump_profile, parse_profile
from mlx_stack.core.routing import RoutingRules, dump_routing, fit_to_tiers, parse_routing
from mlx_stack.errors import NotFoundError, StateError

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

    @property
    def on_demand(self) -> bool:
        return self.mode == ON_DEMAND

    @property
    def idle_unload(self) -> int:
        """Seconds without requests before an on-demand tier is stopped."""
        return self.idle_unload_s or DEFAULT_IDLE_UNLOAD_S


@dataclass(frozen=True)
class Gateway:
    host: str = "127.0.0.1"
    port: int = 4000


@dataclass(frozen=True)
class Cloud:
    """The OpenRouter group, used only when an ``openrouter-key`` is stored."""

    model: str = DEFAULT_CLOUD_MODEL
    base_url: str = DEFAULT_CLOUD_BASE_URL


@dataclass(frozen=True)
class Stack:
    tiers: tuple[Tier, ...]
    fallback_order: tuple[str, ...]
    gateway: Gateway = field(default_factory=Gateway)
    cloud: Cloud = field(default_factory=Cloud)
    # The optional `routing:` section (rules of the `auto` model name, see core.routing);
    # None means the defaults derived from the tiers.
    routing: RoutingRules | None = None
    # What all tiers' serving profiles together may plan (MB); None: from config + hardware.
    memory_budget_mb: int | None = None

    @property
    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]

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

    def fallbacks_for(self, name: str) -> list[str]:
        """Where a request for tier ``name`` goes when that tier fails, in order."""
        return [t for t in self.fallback_order if t != name]

    def with_tier(self, tier: Tier) -> Stack:
        """A copy with ``tier`` replaced (same name) or appended."""
        others = [t for t in self.tiers if t.name != tier.name]
        if len(others) == len(self.tiers):
            order = (*self.fallback_order, tier.name)
            return replace(self, tiers=(*self.tiers, tier), fallback_order=order)
        tiers = tuple(tier if t.name == tier.name else t for t in self.tiers)
        return replace(self, tiers=tiers)


def _err(source: str, where: str, problem: str) -> StateError:
    return StateError(
        f"{source}: {where}: {problem}",
        hint="fix the file by hand, or write a new one with `mlx-stack setup`",
    )


def _get(data: dict[str, Any], key: str, kind: type | tuple[type, ...], source: str, where: str,
         required: bool = True, default: Any = None) -> Any:
    if key not in data or data[key] is None:
        if required:
            raise _err(source, f"{where}{key}", "missing")
        return default
    value = data[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _err(source, f"{where}{key}", f"expected {names}, found {type(value).__name__}")
    return value


def _port(data: dict[str, Any], source: str, where: str) -> int:
    value = _get(data, "port", int, source, where)
    if not 1024 <= value <= 65535:
        raise _err(source, f"{where}port", f"{value} is not a port from 1024 to 65535")
    return value


def _parse_tier(raw: Any, index: int, source: str) -> Tier:
    where = f"tiers[{index}]."
    if not isinstance(raw, dict):
        raise _err(source, f"tiers[{index}]", "expected a mapping")
    raw = cast(dict[str, Any], raw)
    known = {"name", "model", "path", "port", "tool_call_parser", "reasoning_parser",
             "context_window", "extra_args", "serving", "mode", "idle-unload"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _err(source, f"{where}{unknown[0]}", "unknown field")
    name = _get(raw, "name", str, source, where)
    if not _NAME.match(name) or name in RESERVED_NAMES:
        raise _err(source, f"{where}name", f"{name!r} is not a valid tier name "
                   "(lowercase letters, digits, '-'; not gateway/litellm/cloud/auto/all)")
    ctx = _get(raw, "context_window", int, source, where, required=False)
    if ctx is not None and ctx <= 0:
        raise _err(source, f"{where}context_window", "must be positive")
    extra = _get(raw, "extra_args", list, source, where, required=False, default=[])
    if not all(isinstance(a, str) for a in extra):
        raise _err(source, f"{where}extra_args", "expected a list of strings")
    mode = _get(raw, "mode", str, source, where, required=False, default=RESIDENT)
    if mode not in MODES:
        raise _err(source, f"{where}mode", f"{mode!r} is not a mode (resident or on-demand)")
    idle = _get(raw, "idle-unload", (str, int), source, where, required=False)
    idle_s = None
    if idle is not None:
        idle_s = idle if isinstance(idle, int) and idle > 0 else parse_duration(str(idle))
        if idle_s is None:
            raise _err(source, f"{where}idle-unload", f"{idle!r} is not a duration like 30s, 10m or 2h")
        if mode != ON_DEMAND:
            raise _err(source, f"{where}idle-unload", "only an on-demand tier unloads when idle "
                       "(add `mode: on-demand`)")
    return Tier(
        name=name,
        model=_get(raw, "model", str, source, where),
        path=_get(raw, "path", str, source, where),
        port=_port(raw, source, where),
        tool_call_parser=_get(raw, "tool_call_parser", str, source, where, required=False),
        reasoning_parser=_get(raw, "reasoning_parser", str, source, where, required=False),
        context_window=ctx,
        extra_args=tuple(extra),
        serving=parse_profile(raw["serving"], f"{where}serving.", source) if raw.get("serving") is not None
        else None,
        mode=mode,
        idle_unload_s=idle_s,
    )


def parse_stack(data: Any, source: str = "stack.yaml") -> Stack:
    """Validate a mapping loaded from stack.yaml; errors name ``source`` and the field."""
    if not isinstance(data, dict):
        raise _err(source, "top level", f"expected a mapping, found {type(data).__name__}")
    data = cast(dict[str, Any], data)
    schema = data.get("schema")
    if schema != SCHEMA:
        raise StateError(
            f"{source}: unsupported schema {schema!r} (this mlx-stack reads schema {SCHEMA})",
            hint="upgrade mlx-stack, or write a new stack with `mlx-stack setup`",
        )
    unknown = sorted(set(data) - {"schema", "tiers", "fallback_order", "gateway", "cloud", "routing",
                                    "memory_budget_mb"})
    if unknown:
        raise _err(source, unknown[0], "unknown field")
    raw_tiers = _get(data, "tiers", list, source, "")
    if not raw_tiers:
        raise _err(source, "tiers", "at least one tier is needed")
    tiers = tuple(_parse_tier(t, i, source) for i, t in enumerate(raw_tiers))
    names = [t.name for t in tiers]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise _err(source, f"tiers[{i}].name", f"duplicate tier {name!r}")

    gw_raw = _get(data, "gateway", dict, source, "", required=False, default={})
    gateway = Gateway(
        host=_get(gw_raw, "host", str, source, "gateway.", required=False, default="127.0.0.1"),
        port=_port(gw_raw, source, "gateway.") if "port" in gw_raw else 4000,
    )
    ports: dict[int, str] = {gateway.port: "gateway.port"}
    for i, t in enumerate(tiers):
        if t.port in ports:
            raise _err(source, f"tiers[{i}].port", f"port {t.port} is also used by {ports[t.port]}")
        ports[t.port] = f"tiers[{i}].port"

    order = _get(data, "fallback_order", list, source, "", required=False, default=names)
    for i, name in enumerate(order):
        if name not in names:
            raise _err(source, f"fallback_order[{i}]", f"{name!r} is not a tier of this stack")
    if len(set(order)) != len(order):
        raise _err(source, "fallback_order", "a tier is listed twice")

    cloud_raw = _get(data, "cloud", dict, source, "", required=False, default={})
    cloud = Cloud(
        model=_get(cloud_raw, "model", str, source, "cloud.", required=False, default=DEFAULT_CLOUD_MODEL),
        base_url=_get(cloud_raw, "base_url", str, source, "cloud.", required=False,
                      default=DEFAULT_CLOUD_BASE_URL),
    )
    routing = parse_routing(data["routing"], names, source) if data.get("routing") is not None else None
    budget = _get(data, "memory_budget_mb", int, source, "", required=False)
    if budget is not None and budget <= 0:
        raise _err(source, "memory_budget_mb", "must be positive")
    return Stack(tiers=tiers, fallback_order=tuple(order), gateway=gateway, cloud=cloud, routing=routing,
                 memory_budget_mb=budget)


def dump_stack(stack: Stack) -> dict[str, Any]:
    """The mapping written to stack.yaml (no secrets ever live here)."""
    tiers: list[dict[str, Any]] = []
    for t in stack.tiers:
        entry: dict[str, Any] = {"name": t.name, "model": t.model, "path": t.path, "port": t.port}
        for key in ("tool_call_parser", "reasoning_parser", "context_window"):
            if getattr(t, key) is not None:
                entry[key] = getattr(t, key)
        if t.extra_args:
            entry["extra_args"] = list(t.extra_args)
        if t.on_demand:
            entry["mode"] = ON_DEMAND
            if t.idle_unload_s is not None:
                entry["idle-unload"] = format_duration(t.idle_unload_s)
        if t.serving is not None:
            entry["serving"] = dump_profile(t.serving)
        tiers.append(entry)
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "gateway": {"host": stack.gateway.host, "port": stack.gateway.port},
        "fallback_order": list(stack.fallback_order),
        "tiers": tiers,
    }
    if stack.memory_budget_mb is not None:
        data["memory_budget_mb"] = stack.memory_budget_mb
    if stack.cloud != Cloud():
        data["cloud"] = {"model": stack.cloud.model, "base_url": stack.cloud.base_url}
    if stack.routing is not None:
        data["routing"] = dump_routing(fit_to_tiers(stack.routing, stack.tier_names), stack.tier_names)
    return data
