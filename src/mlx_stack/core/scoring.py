"""Tier recommendations: which model runs as `standard`, `fast` and `longctx` (pure).

Public API (stable):
    recommend(profile, catalog, *, intent="balanced", budget_bytes=None, saved=None,
              quant="int4", memory_budget_pct=40, prompt_tokens=16384) -> Recommendation
    budget_for(profile, memory_budget_pct=40, explicit_bytes=None) -> (bytes, explanation)
    candidates(profile, catalog, *, intent, quant, budget_bytes, saved) -> list[Candidate]

Each candidate gets a score in [0, 1] = sum of the intent's weights x normalized
features: quality (core.quality: the model's published aggregate score, or an estimate
that says so, less the quantization's measured loss), speed (log of the short-prompt
decode tok/s from 3 up to the intent's target, 30 balanced / 60 agent-fleet), tool
calling (1 or 0) and memory headroom (1 while the model uses at most half the budget,
falling to 0 at the whole budget).
The three tiers are chosen together so their memory SUM fits the budget,
maximizing score(standard) + 0.6 x score(fast) + 0.4 x score(longctx), with every tier a
different model, fast >= 1.5x standard's decode speed (and tool calling for
agent-fleet), longctx >= 64k context (a different architecture or family earns +0.1).
The ``agent`` intent prices standard (the tier coding agents use) with tool calling and
a window of AGENT_WINDOW tokens (AGENT_WINDOW_MAX when the model and the budget allow).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import cast

from mlx_stack.core.catalog import Catalog, CatalogEntry
from mlx_stack.core.estimator import (
    CACHED_NEW_TOKENS,
    DEFAULT_PROMPT_TOKENS,
    SHORT_CONTEXT,
    decode_tok_s,
    kv_bytes,
    memory_bytes,
    prefill_tok_s,
    ttft_s,
)
from mlx_stack.core.hardware import HardwareProfile
from mlx_stack.core.quality import Quality, assess
from mlx_stack.core.retrieval_plan import RetrievalPick, pick, reserve
from mlx_stack.core.units import gb
from mlx_stack.errors import UsageError


@dataclass(frozen=True)
class Weights:
    quality: float
    speed: float
    tool_calling: float
    memory: float
    speed_target: float  # decode tok/s that earns the full speed score


INTENTS: dict[str, Weights] = {
    "balanced": Weights(quality=0.55, speed=0.25, tool_calling=0.10, memory=0.10, speed_target=30),
    "agent-fleet": Weights(quality=0.30, speed=0.35, tool_calling=0.25, memory=0.10, speed_target=60),
    # coding agents (Claude Code, Codex, OpenCode) on the standard tier: quality and tool
    # calling first, and a long window (below)
    "agent": Weights(quality=0.45, speed=0.20, tool_calling=0.25, memory=0.10, speed_target=40),
}
TIERS = ("standard", "fast", "longctx")
TIER_VALUE = {"standard": 1.0, "fast": 0.6, "longctx": 0.4}
TIER_CONTEXT = {"standard": 8192, "fast": 8192, "longctx": 32768}  # KV cache reserved per tier
FAST_SPEEDUP = 1.5
LONGCTX_MIN_CONTEXT = 65536
# The agent intent's standard tier: a coding agent's first turn is ~19K tokens (system
# prompt + tools) and a session passes 32K within a few turns, so its window is at
# least AGENT_WINDOW tokens, AGENT_WINDOW_MAX where the budget allows, never past the
# model's own context_length; memory is planned for the whole window.
AGENT_WINDOW = 65536
AGENT_WINDOW_MAX = 131072
QUANT_PREFERENCE = ("int4", "int8", "int6", "bf16")
NOMINAL_BANDWIDTH = 100.0  # GB/s, only to rank speeds on a machine without a known bandwidth


@dataclass(frozen=True)
class Candidate:
    """One model at one quantization, priced for one tier's context."""

    entry: CatalogEntry
    quant: str
    repo: str
    context: int
    decode_tok_s: float | None  # None: unknown on this machine
    prefill_tok_s: float | None
    memory_bytes: int
    source: str  # "estimated" | "measured (saved benchmark)" | "measured (catalog: <machine>)"
    rank_speed: float  # short-prompt decode tok/s, or a relative figure when the bandwidth is unknown
    quality: float  # in [0, 1]; quality_info says where it comes from
    score: float = 0.0
    decode_full_tok_s: float | None = None  # at ``context`` tokens
    quality_info: Quality | None = None
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS  # the prompt prefill_tok_s and the TTFTs are for
    ttft_s: float | None = None  # time to first token: prefill of the whole prompt
    ttft_cached_s: float | None = None  # with a prefix-cache hit: the last CACHED_NEW_TOKENS only


@dataclass(frozen=True)
class Tier:
    name: str
    entry: CatalogEntry
    quant: str
    repo: str
    decode_tok_s: float | None
    memory_bytes: int
    context: int
    reason: str
    source: str  # "estimated" or "measured (...)"
    decode_full_tok_s: float | None = None
    quality: Quality | None = None
    prefill_tok_s: float | None = None
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS
    ttft_s: float | None = None
    ttft_cached_s: float | None = None

    @property
    def estimated(self) -> bool:
        return self.source == "estimated"

    @property
    def sources(self) -> dict[str, str]:
        """Where each number of this tier comes from."""
        return number_sources(self.source, self.quality, speed_known=self.decode_tok_s is not None,
                              prefill_known=self.ttft_s is not None)

    def as_dict(self) -> dict[str, object]:
        return {
            "tier": self.name, "model": self.entry.id, "name": self.entry.name, "quant": self.quant,
            "repo": self.repo,
            "decode_tok_s": None if self.decode_tok_s is None else round(self.decode_tok_s, 1),
            "decode_context": SHORT_CONTEXT,
            "decode_full_tok_s": None if self.decode_full_tok_s is None else round(self.decode_full_tok_s, 1),
            "decode_full_context": self.context, **speed_fields(self),
            "memory_bytes": self.memory_bytes, "context": self.context, "source": self.source,
            "estimated": self.estimated, "reason": self.reason,
            "quality": None if self.quality is None else self.quality.as_dict(),
            "sources": self.sources,
            "tool_call_parser": self.entry.capabilities.tool_call_parser,
            "reasoning_parser": self.entry.capabilities.reasoning_parser,
        }


def speed_fields(c: Candidate | Tier) -> dict[str, object]:
    """Prefill and time-to-first-token fields of a candidate or tier, for ``--json``."""
    return {"prefill_tok_s": None if c.prefill_tok_s is None else round(c.prefill_tok_s),
            "prompt_tokens": c.prompt_tokens,
            "ttft_s": None if c.ttft_s is None else round(c.ttft_s, 2),
            "ttft_cached_s": None if c.ttft_cached_s is None else round(c.ttft_cached_s, 2),
            "cached_new_tokens": min(CACHED_NEW_TOKENS, c.prompt_tokens)}


def number_sources(speed_source: str, quality: Quality | None, *, speed_known: bool = True,
                   prefill_known: bool = True) -> dict[str, str]:
    """One line per number: decode speed, prefill (and time to first token), memory and
    quality, and where each comes from."""
    if not speed_known:
        speed = "not estimated: the memory bandwidth is unknown (plan with --chip or --bandwidth)"
        memory = "estimated: weights + KV cache at the tier's context + activations + one server process"
    elif speed_source == "estimated":
        speed = ("estimated by core.estimator (constants fitted on published MLX runs, "
                 "benchmarks/data/; full-context figure from the same model)")
        memory = "estimated: weights + KV cache at the tier's context + activations + one server process"
    elif speed_source == "measured (saved benchmark)":
        speed = "measured on this Mac (`mlx-stack bench --save`); full-context figure scaled by the estimator"
        memory = "measured on this Mac (`mlx-stack bench --save`)"
    else:
        speed = f"{speed_source}; full-context figure scaled by the estimator"
        memory = "estimated: weights + KV cache at the tier's context + activations + one server process"
    prefill = ("not estimated: no Apple GPU (plan with --chip)" if not prefill_known else
               "estimated by core.estimator (compute-bound prefill fitted on published MLX runs, "
               "benchmarks/data/; a left-out chip is off by a median 18%)")
    return {"decode": speed, "prefill": prefill, "memory": memory,
            "quality": "unknown" if quality is None else f"{quality.basis}: {quality.explanation}"}


@dataclass(frozen=True)
class Dropped:
    name: str
    reason: str


@dataclass
class Recommendation:
    intent: str
    weights: Weights
    budget_bytes: int
    budget_reason: str
    tiers: list[Tier]
    dropped: list[Dropped]
    candidates: list[Candidate] = field(default_factory=list[Candidate])
    notes: list[str] = field(default_factory=list[str])
    # Embedding / rerank tiers added within what the chat tiers leave (core.retrieval_plan).
    retrieval: list[RetrievalPick] = field(default_factory=list[RetrievalPick])

    @property
    def total_memory_bytes(self) -> int:
        return sum(t.memory_bytes for t in self.tiers)

    def as_dict(self) -> dict[str, object]:
        return {
            "intent": self.intent, "weights": vars(self.weights).copy(),
            "budget_bytes": self.budget_bytes, "budget": self.budget_reason,
            "total_memory_bytes": self.total_memory_bytes,
            "tiers": [t.as_dict() for t in self.tiers],
            "dropped": [{"tier": d.name, "reason": d.reason} for d in self.dropped],
            "notes": self.notes,
            "retrieval": [r.as_dict() for r in self.retrieval],
        }


def budget_for(profile: HardwareProfile, memory_budget_pct: int = 40,
               explicit_bytes: int | None = None) -> tuple[int, str]:
    """The memory all tiers together may use, and why: ``--budget`` or the configured
    share of memory, never above the GPU working-set limit (nor the memory itself)."""
    if explicit_bytes is not None and explicit_bytes <= 0:
        raise UsageError("the budget must be more than 0")
    if explicit_bytes is not None:
        budget, why = explicit_bytes, f"{gb(explicit_bytes)} (--budget)"
    else:
        budget = int(profile.memory_bytes * memory_budget_pct / 100)
        why = f"{gb(budget)} (memory-budget-pct {memory_budget_pct}% of {gb(profile.memory_bytes)})"
    cap = profile.gpu_limit_bytes or profile.memory_bytes
    if cap and budget > cap:
        label = "GPU working-set limit" if profile.gpu_limit_bytes else "memory"
        budget, why = cap, f"{gb(cap)} (capped at the {label}; asked for {why})"
    return budget, why


def _memory_score(memory: int, budget: int) -> float:
    """Headroom: 1 up to half the budget, then falling to 0 at the whole budget."""
    return max(0.0, min(1.0, 2 * (1 - memory / budget)))


def _speed_score(tok_s: float, target: float) -> float:
    """0 at 3 tok/s, 1 at the intent's target (log scale); faster earns nothing more."""
    return max(0.0, min(1.0, math.log(max(tok_s, 1e-9) / 3) / math.log(target / 3)))


def _pick_quant(entry: CatalogEntry, quant: str) -> str:
    if quant in entry.repos:
        return quant
    return next(q for q in QUANT_PREFERENCE if q in entry.repos)


def _measured_in_catalog(entry: CatalogEntry, quant: str, hw: HardwareProfile) -> tuple[float, str] | None:
    for m in entry.measured:
        if m.quant == quant and m.chip == hw.chip and hw.kind != "cpu" and \
                (m.gpu_cores is None or m.gpu_cores == hw.gpu_cores):
            return m.decode_tok_s, f"measured (catalog: {m.machine})"
    return None


def _saved_value(saved: Mapping[str, object] | None, model_id: str, quant: str,
                 notes: list[str]) -> tuple[float, int] | None:
    """A saved benchmark (decode tok/s, memory bytes) for ``model_id``; rejects entries
    without a positive memory or decode figure (noted)."""
    if not saved or model_id not in saved:
        return None
    raw = saved[model_id]
    get: Callable[[str], object] = (cast(Mapping[str, object], raw).get if isinstance(raw, Mapping)
                                 else lambda k, d=None: getattr(raw, k, d))
    if get("quant") not in (None, quant):
        return None
    decode, memory = get("decode_tok_s"), get("memory_bytes")
    if not isinstance(memory, int | float) or memory <= 0:
        notes.append(f"saved benchmark for {model_id} ignored: no memory measurement")
        return None
    if not isinstance(decode, int | float) or decode <= 0:
        notes.append(f"saved benchmark for {model_id} ignored: no decode speed")
        return None
    return float(decode), int(memory)


def candidates(profile: HardwareProfile, catalog: Catalog | list[CatalogEntry], *, intent: str = "balanced",
               quant: str = "int4", budget_bytes: int, context: int = TIER_CONTEXT["standard"],
               saved: Mapping[str, object] | None = None, notes: list[str] | None = None,
               reference: Catalog | list[CatalogEntry] | None = None,
               prompt_tokens: int = DEFAULT_PROMPT_TOKENS) -> list[Candidate]:
    """Every catalog model priced and scored for one context (not filtered by fit).
    ``reference`` is the catalog that unscored models' quality estimates are drawn from
    (default: ``catalog``); prefill and time to first token are for a ``prompt_tokens`` prompt."""
    weights = INTENTS[intent]
    notes = [] if notes is None else notes
    catalog = [e for e in catalog if e.kind == "chat"]  # retrieval models: core.retrieval_plan
    reference_list = [e for e in (catalog if reference is None else reference) if e.kind == "chat"]
    ranking_hw = profile if profile.bandwidth_gbs else replace(profile, bandwidth_gbs=NOMINAL_BANDWIDTH)
    short = min(SHORT_CONTEXT, context)
    out: list[Candidate] = []
    for entry in catalog:
        q = _pick_quant(entry, quant)
        decode = decode_tok_s(entry, q, profile, short)
        full = decode_tok_s(entry, q, profile, context)
        memory = memory_bytes(entry, q, context)
        source = "estimated"
        measured = _measured_in_catalog(entry, q, profile)
        if measured is not None:
            (decode, full), source = _with_full(measured[0], decode, full), measured[1]
        saved_value = _saved_value(saved, entry.id, q, notes)
        if saved_value is not None:
            (decode, full), source = _with_full(saved_value[0], decode, full), "measured (saved benchmark)"
            memory = saved_value[1]
        rank = decode if decode is not None else (decode_tok_s(entry, q, ranking_hw, short) or 0.0)
        quality = assess(entry, q, reference_list)
        score = (weights.quality * quality.value + weights.speed * _speed_score(rank, weights.speed_target)
                 + weights.tool_calling * (1.0 if entry.capabilities.tool_calling else 0.0)
                 + weights.memory * _memory_score(memory, budget_bytes))
        out.append(Candidate(entry, q, entry.repos[q].repo, context, decode,
                             prefill_tok_s(entry, profile, prompt_tokens, q), memory, source, rank,
                             quality.value, round(score, 4), full, quality, prompt_tokens,
                             ttft_s(entry, q, profile, prompt_tokens),
                             ttft_s(entry, q, profile, prompt_tokens, CACHED_NEW_TOKENS)))
    return sorted(out, key=lambda c: (-c.score, c.entry.id))


def _with_full(measured: float, est_short: float | None,
               est_full: float | None) -> tuple[float, float | None]:
    """A measured short-prompt speed, and the full-context speed scaled by the estimate's ratio."""
    if est_short and est_full:
        return measured, measured * est_full / est_short
    return measured, None


def _longctx_bonus(c: Candidate, standard: Candidate) -> float:
    different = c.entry.attention != standard.entry.attention or c.entry.family != standard.entry.family
    return 0.1 if different else 0.0


def recommend(profile: HardwareProfile, catalog: Catalog | list[CatalogEntry], *, intent: str = "balanced",
              budget_bytes: int | None = None, saved: Mapping[str, object] | None = None,
              quant: str = "int4", memory_budget_pct: int = 40,
              prompt_tokens: int = DEFAULT_PROMPT_TOKENS) -> Recommendation:
    """Assign the tiers so their summed memory fits the budget; explain every choice
    and every dropped tier. ``saved`` maps model id -> {decode_tok_s, memory_bytes[, quant]}
    from `bench --save` and overrides the estimates (entries without memory are ignored)."""
    if intent not in INTENTS:
        raise UsageError(f"unknown intent {intent!r}", hint="intents: " + ", ".join(INTENTS))
    whole, budget_reason = budget_for(profile, memory_budget_pct, budget_bytes)
    notes: list[str] = []
    # Room for an embedding model is kept first when it costs at most an eighth of the budget.
    reserved = reserve(catalog, whole, quant, saved)
    budget = whole - reserved
    if reserved:
        notes.append(f"{gb(reserved)} of the {gb(whole)} budget is kept for an embedding model")
    std = candidates(profile, catalog, intent=intent, quant=quant, budget_bytes=budget, saved=saved,
                     notes=notes, prompt_tokens=prompt_tokens)
    longs = candidates(profile, catalog, intent=intent, quant=quant, budget_bytes=budget,
                       context=TIER_CONTEXT["longctx"], saved=saved, notes=[], prompt_tokens=prompt_tokens)
    longs = [c for c in longs if c.entry.context_length >= LONGCTX_MIN_CONTEXT]
    agent = intent == "agent-fleet"
    fits = [c for c in std if c.memory_bytes <= budget]
    standards = fits
    if intent == "agent":  # the standard tier takes agent traffic: tool calls and a long window
        agents = candidates(profile, catalog, intent=intent, quant=quant, budget_bytes=budget,
                            context=AGENT_WINDOW, saved=saved, notes=[])
        standards = [c for c in agents if c.memory_bytes + _agent_cache(c) <= budget
                     and c.entry.capabilities.tool_calling and c.entry.context_length >= AGENT_WINDOW]
    if profile.bandwidth_gbs is None:
        notes.append("bandwidth unknown: speeds are not estimated; 'fast' is ranked by model size")
    if not standards:
        smallest = min(std, key=lambda c: c.memory_bytes)
        reason = (f"no catalog model fits {gb(budget)}; the smallest ({smallest.entry.id} "
                  f"{smallest.quant}) needs {gb(smallest.memory_bytes)}")
        if fits:  # the agent intent: models fit, none with tool calling and a 64K window
            reason = (f"no catalog model with tool calling fits {gb(budget)} with a "
                      f"{AGENT_WINDOW // 1024}K-token window")
        return Recommendation(intent, INTENTS[intent], budget, budget_reason, [],
                              [Dropped(t, reason) for t in TIERS], std, notes)

    best: tuple[float, Candidate, Candidate | None, Candidate | None] | None = None
    for s in standards:
        left = budget - s.memory_bytes - (_agent_cache(s) if intent == "agent" else 0)
        fast_ok = [f for f in fits if f.entry.id != s.entry.id and f.memory_bytes <= left
                   and f.quality <= s.quality
                   and f.rank_speed >= FAST_SPEEDUP * s.rank_speed
                   and (not agent or f.entry.capabilities.tool_calling)]
        for f in [None, *fast_ok]:
            left2 = left - (f.memory_bytes if f else 0)
            used = {s.entry.id, f.entry.id if f else ""}
            long_ok = (c for c in longs if c.entry.id not in used and c.memory_bytes <= left2
                       and c.quality <= s.quality)  # standard stays the best-quality tier
            for lc in [None, *long_ok]:
                value = s.score + (TIER_VALUE["fast"] * _fast_score(f) if f else 0.0)
                if lc is not None:
                    value += TIER_VALUE["longctx"] * (lc.score + _longctx_bonus(lc, s))
                if best is None or value > best[0] + 1e-9:
                    best = (value, s, f, lc)
    assert best is not None
    _, s, f, lc = best
    window = ""
    if intent == "agent":
        others = sum(c.memory_bytes for c in (f, lc) if c is not None)
        left = budget - s.memory_bytes - _agent_cache(s) - others
        s, window = _agent_window(s, profile, left)
    tiers = [_tier("standard", s, f"highest {intent} score that fits with the other tiers "
                   f"(score {s.score:.2f}, {s.entry.params_b:g}B params, quality {_quality_label(s)})"
                   f"{window}")]
    dropped: list[Dropped] = []
    if f is not None:
        speedup = f.rank_speed / s.rank_speed if s.rank_speed else 0
        tool = ", tool calling" if f.entry.capabilities.tool_calling else ""
        basis = "" if f.decode_tok_s is not None else " (relative, from model size: bandwidth unknown)"
        tiers.append(_tier("fast", f, f"{speedup:.1f}x the standard tier's decode speed{basis}{tool}; "
                           f"quality {_quality_label(f)}"))
    else:
        dropped.append(Dropped("fast", _why_no_fast(s, std, budget, agent)))
    if lc is not None:
        arch = " (different architecture)" if _longctx_bonus(lc, s) else ""
        tiers.append(_tier("longctx", lc, f"{lc.entry.context_length // 1024}k context window{arch}; "
                           f"memory reserved for {lc.context // 1024}k tokens"))
    else:
        dropped.append(Dropped("longctx", _why_no_long(s, f, longs, budget)))
    retrieval, left_out = pick(catalog, whole - sum(t.memory_bytes for t in tiers), quant, saved)
    return Recommendation(intent, INTENTS[intent], whole, budget_reason, tiers, dropped, std,
                          [*notes, *left_out], retrieval)


def _agent_cache(c: Candidate) -> int:
    """The room the agent tier's prefix cache needs beside its window: its sessions'
    prefixes, at 8-bit KV where the head size allows MLX's group-64 quantization
    (core.memory_plan serves that cache before any other tier's)."""
    from mlx_stack.core.memory_plan import AGENT_PREFIX_TOKENS, AGENT_SESSIONS, QUANT_GROUP

    fp16 = kv_bytes(c.entry, AGENT_PREFIX_TOKENS) * AGENT_SESSIONS
    kv = c.entry.kv_cache
    return fp16 // 2 if kv is not None and kv.head_dim % QUANT_GROUP == 0 else fp16


def _agent_window(s: Candidate, profile: HardwareProfile, left: int) -> tuple[Candidate, str]:
    """The agent tier at AGENT_WINDOW_MAX tokens when the model and the budget's rest allow
    it; and the one-line reason for its window."""
    if s.entry.context_length < AGENT_WINDOW_MAX:
        why = f"the model's own limit is {s.entry.context_length // 1024}K"
    else:
        bigger = memory_bytes(s.entry, s.quant, AGENT_WINDOW_MAX)
        if bigger - s.memory_bytes <= left:
            full = decode_tok_s(s.entry, s.quant, profile, AGENT_WINDOW_MAX)
            if s.decode_full_tok_s is not None and s.decode_tok_s and full is not None:
                at_min = decode_tok_s(s.entry, s.quant, profile, AGENT_WINDOW) or full
                full = s.decode_full_tok_s * full / at_min  # a measured figure, scaled
            s = replace(s, context=AGENT_WINDOW_MAX, memory_bytes=bigger, decode_full_tok_s=full)
            why = "it fits the budget"
        else:
            why = (f"{AGENT_WINDOW_MAX // 1024}K would need {gb(bigger - s.memory_bytes)} more than the "
                   f"{gb(max(0, left))} the budget leaves")
    return s, (f"; window {s.context // 1024}K tokens for coding agents (a first turn is ~19K, "
               f"a session passes 32K), as {why}")


def _fast_score(c: Candidate) -> float:
    return c.score + 0.2 * _speed_score(c.rank_speed, 300)  # the fast tier is there to be fast


def _quality_label(c: Candidate) -> str:
    q = c.quality_info
    return "unknown" if q is None else f"{q.quantized_score:.1f} {q.basis}"


def _tier(name: str, c: Candidate, reason: str) -> Tier:
    return Tier(name, c.entry, c.quant, c.repo, c.decode_tok_s, c.memory_bytes, c.context, reason, c.source,
                c.decode_full_tok_s, c.quality_info, c.prefill_tok_s, c.prompt_tokens, c.ttft_s,
                c.ttft_cached_s)


def _why_no_fast(s: Candidate, std: list[Candidate], budget: int, agent: bool) -> str:
    faster = [c for c in std if c.entry.id != s.entry.id and c.rank_speed >= FAST_SPEEDUP * s.rank_speed
              and (not agent or c.entry.capabilities.tool_calling)]
    need = "with tool calling " if agent else ""
    if not faster:
        return f"no catalog model {need}is {FAST_SPEEDUP:g}x faster than the standard tier ({s.entry.id})"
    smallest = min(faster, key=lambda c: c.memory_bytes)
    return (f"the smallest model {need}{FAST_SPEEDUP:g}x faster than {s.entry.id} "
            f"({smallest.entry.id}) needs "
            f"{gb(smallest.memory_bytes)}; only {gb(budget - s.memory_bytes)} of the budget remains")


def _why_no_long(s: Candidate, f: Candidate | None, longs: list[Candidate], budget: int) -> str:
    used = {s.entry.id, f.entry.id if f else ""}
    options = [c for c in longs if c.entry.id not in used]
    if not options:
        return f"no other catalog model has a context window of {LONGCTX_MIN_CONTEXT // 1024}k or more"
    smallest = min(options, key=lambda c: c.memory_bytes)
    left = budget - s.memory_bytes - (f.memory_bytes if f else 0)
    return (f"the smallest long-context model ({smallest.entry.id}) needs {gb(smallest.memory_bytes)} "
            f"with {TIER_CONTEXT['longctx'] // 1024}k tokens of KV cache; only {gb(left)} remains")
