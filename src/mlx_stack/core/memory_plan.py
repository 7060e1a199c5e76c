"""The serving profile of each tier: the runtime caps that hold a server to its plan (pure).

The recommender counts, per tier, weights + KV cache at the tier's context +
activations + the server process (``estimator.memory_bytes``). vllm-mlx 0.6 would
then add, per server, a prompt/prefix cache of up to ~20% of RAM and a Metal
allocation limit of 90% of the device, as if each server were alone. The planner
turns the same figures into caps every server is started with:

- ``cache_memory_mb``: the prefix cache of each tier, carved from what the budget
  leaves after every tier's need (a few planned contexts' worth, shared in
  proportion when the budget is short; off below ``MIN_CACHE_MB``). With the paged
  cache it is enforced as ``--max-cache-blocks`` (cap / (KV bytes per token x block));
- ``gpu_memory_utilization``: each tier's Metal share of the working-set limit (its
  plan plus a margin), all tiers together at most ``METAL_TOTAL_MAX``;
- ``max_num_seqs`` by intent and role, the default ``max_tokens`` at the planned context;
- ``kv_cache_bits``: 8 (or 4) when the cache cap cannot hold one full planned context
  at fp16 and the model's head size allows MLX's group-64 quantization; the server
  then uses vllm-mlx's memory-aware cache (the paged cache does not quantize);
- the ``agent`` intent: the agent tier (``standard``) plans its whole window (64K or
  128K tokens), its prefix cache holds ``AGENT_SESSIONS`` sessions' prefixes, and it
  gets an on-disk prefix cache (``ssd_cache_gb``, vllm-mlx's ``--ssd-cache-dir``, which
  only the memory-aware cache has) so a restart keeps the warm prefixes.

So ``need + cache cap`` of all tiers <= the budget, checked again on every `up`
(:func:`check_budget`) since stack.yaml can be edited by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, cast

from mlx_stack.core.units import format_mb
from mlx_stack.errors import ConflictError, StateError
from mlx_stack.json_types import JSONObject, as_object, to_int

if TYPE_CHECKING:
    from mlx_stack.core.catalog import CatalogEntry

MB = 1024 * 1024
BLOCK_SIZE = 64  # vllm-mlx's paged-cache block (tokens), its default
MAX_BLOCKS = 65536  # beyond this the block table itself costs more than it saves
MIN_CACHE_MB = 32  # a smaller prefix cache holds too little to be worth its upkeep
UNKNOWN_KV_PER_TOKEN = 4096  # bytes, when config.json gives no shape
DEFAULT_CACHE_MB = 512  # wanted cache of a model whose KV shape is unknown
CACHE_CONTEXTS = {"balanced": 2, "agent-fleet": 4}  # planned contexts of prefix kept per tier
# The agent intent: the agent tier's prefix cache holds AGENT_SESSIONS sessions' prefixes
# (a coding agent's system prompt + tools is ~19K tokens, and its conversation grows
# on it), and its on-disk prefix cache (vllm-mlx 0.6 --ssd-cache-dir) is capped at
# AGENT_SSD_CONTEXTS planned windows of fp16 KV, at least SSD_MIN_GB.
AGENT_SESSIONS = 2
AGENT_PREFIX_TOKENS = 32768
AGENT_SSD_CONTEXTS = 4
SSD_MIN_GB = 1.0
AGENT_TIER = "standard"  # the tier agent traffic goes to (the front door's aliases send it there)
METAL_MARGIN = 1.15  # Metal limit = plan x this (transient buffers), when the budget allows
METAL_TOTAL_MAX = 0.95  # all tiers' Metal shares together, of the working-set limit
METAL_MAX = 0.90  # vllm-mlx's own default for one process alone
QUANT_GROUP = 64  # MLX quantizes KV in groups of 64 along the head dimension
MAX_DEFAULT_TOKENS = 32768  # vllm-mlx 0.6 refuses --max-tokens above its --max-request-tokens (32768)
MAX_NUM_SEQS = {
    "balanced": {"standard": 4, "fast": 8, "longctx": 2},
    "agent": {"standard": 4, "fast": 8, "longctx": 2},
    "agent-fleet": {"standard": 8, "fast": 16, "longctx": 4},
}
ROLES = ("standard", "fast", "longctx")
INTENTS = tuple(MAX_NUM_SEQS)


@dataclass(frozen=True)
class TierNeed:
    """What the plan counts for one tier (the recommender's figures)."""

    name: str
    need_bytes: int  # weights + KV at ``context`` + activations + server process
    context: int
    weights_bytes: int = 0
    kv_bytes: int = 0  # at ``context``, fp16
    kv_bytes_per_token: int = 0  # fp16; 0 when the model's shape is unknown
    head_dim: int | None = None

    @property
    def role(self) -> str:
        return self.name if self.name in ROLES else "standard"


@dataclass(frozen=True)
class ServingProfile:
    """The serving profile of one tier, as written in stack.yaml under ``serving:``."""

    context: int  # tokens of KV the plan reserves for running requests
    need_mb: int  # weights + KV at context + activations + server
    cache_memory_mb: int  # prefix cache cap; 0 = prefix cache off
    gpu_memory_utilization: float  # Metal allocation limit, share of the working-set limit
    max_num_seqs: int
    weights_mb: int = 0
    kv_mb: int = 0
    kv_bytes_per_token: int = 0  # fp16 KV per token (model shape); sizes the paged cache
    kv_cache_bits: int | None = None  # None: fp16 cache (paged); 8/4: quantized (memory-aware)
    metrics: bool = True
    ssd_cache_gb: float = 0.0  # on-disk prefix cache cap (vllm-mlx --ssd-cache-max-gb); 0 = none

    @property
    def planned_mb(self) -> int:
        """Everything this tier may hold: its need plus its cache cap."""
        return self.need_mb + self.cache_memory_mb

    @property
    def prefix_cache(self) -> bool:
        return self.cache_memory_mb > 0

    @property
    def cache_blocks(self) -> int:
        """Paged-cache blocks that fit the cache cap (fp16 KV)."""
        if not self.kv_bytes_per_token:  # shape unknown: assume 4 KB per token, a ~1B model
            return max(1, min(MAX_BLOCKS, self.cache_memory_mb * MB // (UNKNOWN_KV_PER_TOKEN * BLOCK_SIZE)))
        return max(1, min(MAX_BLOCKS, self.cache_memory_mb * MB // (self.kv_bytes_per_token * BLOCK_SIZE)))

    @property
    def cache_tokens(self) -> int:
        """Tokens of prefix the cap holds, at the cache's precision (the adjusted estimate)."""
        if not self.kv_bytes_per_token:
            return self.cache_blocks * BLOCK_SIZE
        bits = self.kv_cache_bits or 16
        return int(self.cache_memory_mb * MB / (self.kv_bytes_per_token * bits / 16))


def kv_shape(config: Mapping[str, object]) -> tuple[int, int | None]:
    """fp16 KV bytes per token and head size from a model's config.json (0, None if unknown)."""
    cfg = as_object(config.get("text_config")) or config
    try:  # a missing field reads as 0, which the check below turns into "unknown"
        layers = to_int(cfg.get("num_hidden_layers"))
        heads = to_int(cfg.get("num_attention_heads"))
        kv_heads = to_int(cfg.get("num_key_value_heads") or heads)
        head_dim = to_int(cfg.get("head_dim") or to_int(cfg.get("hidden_size")) // heads)
    except (TypeError, ValueError, ZeroDivisionError):
        return 0, None
    if min(layers, kv_heads, head_dim) <= 0:
        return 0, None
    return 2 * layers * kv_heads * head_dim * 2, head_dim


def need_from_shape(name: str, weights_bytes: int, kv_bytes_per_token: int, context: int,
                    head_dim: int | None = None) -> TierNeed:
    """A tier's need by the estimator's formula, for a model known by its files only."""
    from mlx_stack.core.estimator import ACTIVATION_FIXED, ACTIVATION_SHARE, SERVER_PROCESS

    kv = kv_bytes_per_token * context
    need = int(weights_bytes * (1 + ACTIVATION_SHARE) + ACTIVATION_FIXED + kv + SERVER_PROCESS)
    return TierNeed(name, need, context, weights_bytes, kv, kv_bytes_per_token, head_dim)


def need_from_catalog(name: str, entry: CatalogEntry, quant: str, context: int) -> TierNeed:
    """A catalog tier's need: exactly the recommender's figure (``estimator.memory_bytes``)."""
    from mlx_stack.core.estimator import kv_bytes, memory_bytes, weights_bytes

    kv = kv_bytes(entry, context)
    head = entry.kv_cache.head_dim if entry.kv_cache is not None else None
    return TierNeed(name, memory_bytes(entry, quant, context), context, weights_bytes(entry, quant), kv,
                    kv // max(1, min(context, entry.context_length)), head)


class _RecommendedTier(Protocol):
    """What planning reads of a ``scoring.Tier`` (named here so this module does not import
    scoring, which imports it)."""

    @property
    def name(self) -> str: ...
    @property
    def entry(self) -> CatalogEntry: ...
    @property
    def quant(self) -> str: ...
    @property
    def context(self) -> int: ...
    @property
    def memory_bytes(self) -> int: ...


class _Recommended(Protocol):
    """What planning reads of a ``scoring.Recommendation``."""

    @property
    def tiers(self) -> Sequence[_RecommendedTier]: ...
    @property
    def budget_bytes(self) -> int: ...
    @property
    def intent(self) -> str: ...


def for_recommendation(rec: _Recommended, working_set_bytes: int) -> dict[str, ServingProfile]:
    """The profiles of a ``scoring.Recommendation``'s tiers: the same need figures
    (``Tier.memory_bytes``, measured ones included), caps from the same budget."""
    needs: list[TierNeed] = []
    for t in rec.tiers:
        n = need_from_catalog(t.name, t.entry, t.quant, t.context)
        needs.append(replace(n, need_bytes=t.memory_bytes))
    return plan(needs, rec.budget_bytes, working_set_bytes, intent=rec.intent)


# --- planning -----------------------------------------------------------------------


def _mb(n: float) -> int:
    return math.ceil(n / MB)


def _wanted_cache_mb(need: TierNeed, intent: str) -> int:
    if not need.kv_bytes_per_token:
        return DEFAULT_CACHE_MB
    if intent == "agent" and need.name == AGENT_TIER:
        prefix = min(need.context, AGENT_PREFIX_TOKENS)
        return max(MIN_CACHE_MB, _mb(need.kv_bytes_per_token * prefix * AGENT_SESSIONS))
    wanted = need.kv_bytes_per_token * need.context * CACHE_CONTEXTS.get(intent, 2)
    return max(MIN_CACHE_MB, _mb(wanted))


def _kv_bits(need: TierNeed, cache_mb: int, intent: str = "balanced") -> int | None:
    """Quantize the cache when fp16 cannot hold one planned context (for the agent tier:
    its sessions' prefixes) and 8/4 bits can."""
    if cache_mb <= 0 or not need.kv_bytes_per_token or not need.head_dim:
        return None
    if need.head_dim % QUANT_GROUP:
        return None
    tokens = need.context
    if intent == "agent" and need.name == AGENT_TIER:
        tokens = min(need.context, AGENT_PREFIX_TOKENS) * AGENT_SESSIONS
    full = need.kv_bytes_per_token * tokens
    cap = cache_mb * MB
    if cap >= full:
        return None
    return 8 if cap >= full / 2 else 4


def plan(needs: Iterable[TierNeed], budget_bytes: int, working_set_bytes: int, *,
         intent: str = "balanced", fixed: Mapping[str, ServingProfile] | None = None
         ) -> dict[str, ServingProfile]:
    """A profile per tier such that sum(need + cache cap) <= ``budget_bytes``.

    ``fixed``: profiles of tiers that keep theirs (a running stack being extended);
    the new tiers share what those leave. Needs above the budget get no cache
    (the caller refuses or warns: see :func:`check_budget`).
    """
    intent = intent if intent in MAX_NUM_SEQS else "balanced"
    fixed = dict(fixed or {})
    needs = [n for n in needs if n.name not in fixed]
    budget_mb = budget_bytes // MB
    left = budget_mb - sum(p.planned_mb for p in fixed.values()) - sum(_mb(n.need_bytes) for n in needs)
    wanted = {n.name: _wanted_cache_mb(n, intent) for n in needs}
    caps: dict[str, int] = {}
    if intent == "agent" and AGENT_TIER in wanted:
        # the agent tier's sessions first (the recommender reserved room for them, at 8 bits)
        first = min(wanted.pop(AGENT_TIER), max(0, left))
        caps[AGENT_TIER] = first if first >= MIN_CACHE_MB else 0
        left -= caps[AGENT_TIER]
    total_wanted = sum(wanted.values())
    for n in needs:
        if n.name in caps:
            continue
        share = wanted[n.name] if total_wanted <= left else int(max(0, left) * wanted[n.name] / total_wanted)
        caps[n.name] = share if share >= MIN_CACHE_MB else 0
    out: dict[str, ServingProfile] = dict(fixed)
    for n in needs:
        out[n.name] = ServingProfile(
            context=n.context, need_mb=_mb(n.need_bytes), cache_memory_mb=caps[n.name],
            gpu_memory_utilization=0.0, max_num_seqs=MAX_NUM_SEQS[intent][n.role],
            weights_mb=_mb(n.weights_bytes), kv_mb=_mb(n.kv_bytes),
            kv_bytes_per_token=n.kv_bytes_per_token, kv_cache_bits=_kv_bits(n, caps[n.name], intent),
            ssd_cache_gb=_ssd_gb(n, intent),
        )
    return metal_shares(out, working_set_bytes, keep=set(fixed))


def _ssd_gb(need: TierNeed, intent: str) -> float:
    """The agent tier's on-disk prefix cache cap: a few windows of fp16 KV (a restart
    then finds the warm prefixes); no on-disk cache for other intents and tiers."""
    if intent != "agent" or need.name != AGENT_TIER:
        return 0.0
    per_token = need.kv_bytes_per_token or UNKNOWN_KV_PER_TOKEN
    return max(SSD_MIN_GB, math.ceil(per_token * need.context * AGENT_SSD_CONTEXTS / 1024**3))


def metal_shares(profiles: Mapping[str, ServingProfile], working_set_bytes: int,
                 keep: set[str] | None = None) -> dict[str, ServingProfile]:
    """Give each tier (but those in ``keep``) its Metal share: plan x margin / working set,
    rounded up to 1%, all tiers together at most METAL_TOTAL_MAX when they fit at all."""
    keep = keep or set()
    ws_mb = max(1, working_set_bytes // MB)
    total = sum(p.planned_mb for p in profiles.values())
    margin = max(1.0, min(METAL_MARGIN, METAL_TOTAL_MAX * ws_mb / max(1, total)))
    out: dict[str, ServingProfile] = {}
    for name, p in profiles.items():
        if name in keep:
            out[name] = p
            continue
        share = math.ceil(p.planned_mb * margin / ws_mb * 100) / 100
        out[name] = replace(p, gpu_memory_utilization=min(METAL_MAX, max(0.01, share)))
    return out


# --- checks -------------------------------------------------------------------------


def check_budget(profiles: Mapping[str, ServingProfile], budget_mb: int) -> None:
    """ConflictError (exit 5) naming the numbers when the tiers' plans exceed the budget."""
    total = sum(p.planned_mb for p in profiles.values())
    if total <= budget_mb:
        return
    parts = ", ".join(f"{n} {format_mb(p.need_mb)} + cache {format_mb(p.cache_memory_mb)}"
                      for n, p in profiles.items())
    over = total - budget_mb
    raise ConflictError(
        f"the serving profiles in stack.yaml plan {format_mb(total)}, over the memory budget of "
        f"{format_mb(budget_mb)} by {format_mb(over)} ({parts})",
        hint="lower cache_memory_mb (or remove a tier) in stack.yaml, re-plan with `mlx-stack setup`, "
        "or pass --force to start anyway",
    )


@dataclass(frozen=True)
class GuardInput:
    """What the memory guard sees: the limit, and the plans of what runs and what would start."""

    limit_mb: int
    limit_label: str  # "GPU working-set limit" | "available memory"
    starting: Mapping[str, int]  # tier -> planned MB
    running: Mapping[str, int]  # tier -> MB still to count for a running tier


def guard(g: GuardInput) -> None:
    """ConflictError (exit 5) when the tiers to start do not fit next to what runs;
    the message names the numbers and which of them would fit."""
    used = sum(g.running.values())
    need = sum(g.starting.values())
    if used + need <= g.limit_mb:
        return
    room = g.limit_mb - used
    fits: list[str] = []
    acc = 0
    for name, mb in sorted(g.starting.items(), key=lambda kv: kv[1]):
        if acc + mb <= room:
            fits.append(name)
            acc += mb
    starting = ", ".join(f"{n} {format_mb(mb)}" for n, mb in g.starting.items())
    running = (f" next to {format_mb(used)} planned for the running tiers ({', '.join(g.running)})"
               if g.running else "")
    would = (f"only {', '.join(fits)} would fit" if fits
             else f"no tier fits in the {format_mb(max(0, room))} left")
    raise ConflictError(
        f"not enough memory: starting {starting} needs {format_mb(need)}{running}; the {g.limit_label} is "
        f"{format_mb(g.limit_mb)}; {would}",
        hint="stop a tier (`mlx-stack down --tier NAME`), start fewer (`up --tier NAME`), pick smaller "
        "models with `mlx-stack setup`, or pass --force to start anyway",
    )


# --- stack.yaml -----------------------------------------------------------------------

_FIELDS = {
    "context": int, "need_mb": int, "cache_memory_mb": int, "gpu_memory_utilization": (int, float),
    "max_num_seqs": int, "weights_mb": int, "kv_mb": int, "kv_bytes_per_token": int,
    "kv_cache_bits": int, "metrics": bool, "ssd_cache_gb": (int, float),
}
_REQUIRED = ("context", "need_mb", "cache_memory_mb", "gpu_memory_utilization", "max_num_seqs")


def parse_profile(raw: object, where: str, source: str) -> ServingProfile:
    """Validate a tier's ``serving:`` mapping; StateError names the field."""
    def err(field: str, problem: str) -> StateError:
        return StateError(f"{source}: {where}{field}: {problem}",
                          hint="fix the file by hand, or write a new plan with `mlx-stack setup`")

    given = as_object(raw)
    if given is None:
        raise err("", "expected a mapping")
    unknown = sorted(set(given) - set(_FIELDS), key=str)
    if unknown:
        raise err(unknown[0], "unknown field")
    values: dict[str, int | float] = {}  # a bool is an int
    for key, kind in _FIELDS.items():
        value = given.get(key)
        if value is None:
            if key in _REQUIRED:
                raise err(key, "missing")
            continue
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise err(key, f"expected {'a number' if kind == (int, float) else kind.__name__}, "  # type: ignore[union-attr]
                      f"found {type(value).__name__}")
        values[key] = cast("int | float", value)
    for key in ("context", "need_mb", "max_num_seqs"):
        if values[key] <= 0:
            raise err(key, "must be positive")
    for key in ("cache_memory_mb", "weights_mb", "kv_mb", "kv_bytes_per_token"):
        if values.get(key, 0) < 0:
            raise err(key, "must be 0 or more")
    if not 0 < values["gpu_memory_utilization"] <= 1:
        raise err("gpu_memory_utilization", "must be above 0 and at most 1")
    if values.get("ssd_cache_gb", 0) < 0:
        raise err("ssd_cache_gb", "must be 0 or more")
    if values.get("kv_cache_bits") not in (None, 4, 8):
        raise err("kv_cache_bits", "must be 4, 8 or absent (fp16)")
    values["gpu_memory_utilization"] = float(values["gpu_memory_utilization"])
    if "ssd_cache_gb" in values:
        values["ssd_cache_gb"] = float(values["ssd_cache_gb"])
    # each value has its field's type, checked against _FIELDS above (per key, beyond pyright)
    return ServingProfile(**values)  # pyright: ignore[reportArgumentType]


def dump_profile(p: ServingProfile) -> JSONObject:
    data: JSONObject = {
        "context": p.context, "weights_mb": p.weights_mb, "kv_mb": p.kv_mb, "need_mb": p.need_mb,
        "cache_memory_mb": p.cache_memory_mb, "gpu_memory_utilization": p.gpu_memory_utilization,
        "max_num_seqs": p.max_num_seqs, "kv_bytes_per_token": p.kv_bytes_per_token,
    }
    if p.kv_cache_bits is not None:
        data["kv_cache_bits"] = p.kv_cache_bits
    if not p.metrics:
        data["metrics"] = False
    if p.ssd_cache_gb:
        data["ssd_cache_gb"] = p.ssd_cache_gb
    return data


def server_flags(p: ServingProfile, ssd_dir: str | None = None) -> list[str]:
    """The vllm-mlx 0.6 flags of a profile (after ``--continuous-batching``); ``ssd_dir``:
    the tier's on-disk prefix cache folder, used when the profile caps one."""
    flags: list[str] = []
    if not p.prefix_cache:
        flags += ["--disable-prefix-cache"]
    elif p.kv_cache_bits or (p.ssd_cache_gb and ssd_dir):
        # Quantized KV, and the on-disk tier, live only in the memory-aware cache, capped in MB.
        flags += ["--enable-prefix-cache", "--cache-memory-mb", str(p.cache_memory_mb)]
        if p.kv_cache_bits:
            flags += ["--kv-cache-quantization", "--kv-cache-quantization-bits", str(p.kv_cache_bits)]
    else:
        flags += ["--enable-prefix-cache", "--use-paged-cache",
                  "--paged-cache-block-size", str(BLOCK_SIZE), "--max-cache-blocks", str(p.cache_blocks),
                  "--cache-memory-mb", str(p.cache_memory_mb)]
    flags += [
        "--gpu-memory-utilization", f"{p.gpu_memory_utilization:g}",
        "--max-num-seqs", str(p.max_num_seqs),
        # The default max_tokens of a request that sets none; not --max-request-tokens: it
        # refuses (400) larger values, and agent clients ask for 32k+ as a matter of course.
        "--max-tokens", str(min(p.context, MAX_DEFAULT_TOKENS)),
    ]
    if p.metrics:
        flags.append("--enable-metrics")
    if p.prefix_cache and p.ssd_cache_gb and ssd_dir:
        # a prefix cache tier on disk: a restart finds the warm prefixes there
        flags += ["--ssd-cache-dir", ssd_dir, "--ssd-cache-max-gb", f"{p.ssd_cache_gb:g}"]
    return flags
