"""Serving profiles for a stack's tiers, and the memory guard before any tier starts.

Planning (``core.memory_plan``) is pure; this module gathers its inputs: each
tier's need (the catalog's figures when setup knows the model, else the model
folder's weights and config.json), the budget (``memory-budget-pct`` of memory,
capped at the GPU working-set limit, as the recommender computes it) and, for the
guard, the limit (GPU working-set limit on macOS, available memory elsewhere)
and what the running tiers hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mlx_stack.core.memory_plan import (
    MB,
    GuardInput,
    ServingProfile,
    TierNeed,
    check_budget,
    cluster_guard,
    cluster_profile,
    guard,
    kv_shape,
    need_from_shape,
    plan,
)
from mlx_stack.core.stack import Stack, Tier
from mlx_stack.paths import Paths

if TYPE_CHECKING:
    from mlx_stack.core.cluster import HostShare
    from mlx_stack.core.hardware import HardwareProfile
    from mlx_stack.core.service_state import ServiceStatus
    from mlx_stack.system.host import Host
    from mlx_stack.system.pidfile import PidRecord

DEFAULT_TIER_CONTEXT = 8192


def planned_context(tier_name: str, context_window: int | None) -> int:
    """The tokens of KV a tier is planned for: the recommender's per-role figure,
    never more than the model's own window."""
    from mlx_stack.core.scoring import TIER_CONTEXT

    ctx = TIER_CONTEXT.get(tier_name, DEFAULT_TIER_CONTEXT)
    return min(ctx, context_window) if context_window else ctx


def need_from_folder(tier: Tier) -> TierNeed:
    """Weights = the safetensors on disk; KV from config.json (0 if unreadable). A retrieval
    tier holds no KV: weights, the estimator's activation terms and its own server process."""
    folder = Path(tier.path)
    weights = 0
    try:
        for f in folder.glob("*.safetensors"):
            weights += f.stat().st_size
    except OSError:
        pass
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    if tier.retrieval:  # context: the input limit (vllm-mlx's own rule: the model's positions)
        positions = config.get("max_position_embeddings") if isinstance(config, dict) else None
        limit = tier.max_input_tokens or (positions if isinstance(positions, int) and positions > 0 else 512)
        return need_from_shape(tier.name, weights, 0, limit)
    per_token, head_dim = kv_shape(config if isinstance(config, dict) else {})
    ctx = planned_context(tier.name, tier.context_window)
    return need_from_shape(tier.name, weights, per_token, ctx, head_dim)


def retrieval_profile(need: TierNeed, working_set_bytes: int) -> ServingProfile:
    """The plan of a retrieval tier: its need, no cache (vllm-mlx's caps are chat-only; its
    command line passes none of them, the share is recorded for `status`)."""
    need_mb = -(-need.need_bytes // MB)
    share = min(0.9, max(0.01, round(need_mb / max(1, working_set_bytes // MB), 2)))
    return ServingProfile(context=need.context, need_mb=need_mb, cache_memory_mb=0,
                          gpu_memory_utilization=share, max_num_seqs=1,
                          weights_mb=-(-need.weights_bytes // MB))


def budget(p: Paths, hw: HardwareProfile, pct: int | None = None) -> tuple[int, str]:
    """The recommender's budget for this machine and config (or ``pct`` of memory)."""
    from mlx_stack.core.scoring import budget_for
    from mlx_stack.services import config

    return budget_for(hw, pct or int(config.load(p).get("memory-budget-pct")))


def working_set(hw: HardwareProfile) -> int:
    return int(hw.gpu_limit_bytes or hw.memory_bytes)


@dataclass
class Planned:
    """A stack with every tier's serving profile, and the memory budget it was planned in."""

    stack: Stack
    budget_bytes: int
    budget_reason: str
    over_budget: bool = False  # the tiers' needs alone exceed the configured budget


def plan_stack(p: Paths, stack: Stack, *, intent: str | None = None,
               needs: Mapping[str, TierNeed] | None = None, hw: HardwareProfile | None = None,
               pct: int | None = None) -> Planned:
    """``stack`` with a serving profile on every tier that has none (tiers that have one
    keep it: they may be running) and its memory budget recorded."""
    if hw is None:
        from mlx_stack.services import hardware

        hw = hardware.detect()
    budget_bytes, reason = budget(p, hw, pct)
    needs = dict(needs or {})
    todo = [t for t in stack.tiers if t.serving is None]
    fixed = {t.name: t.serving for t in stack.tiers if t.serving is not None}
    # A retrieval tier gets no prefix cache and no share of the rest: its need is its plan.
    fixed.update({t.name: retrieval_profile(needs.get(t.name) or need_from_folder(t), working_set(hw))
                  for t in todo if t.retrieval})
    # A cluster tier's plan is split over its hosts: it takes no share of this Mac's cache.
    fixed.update({t.name: cluster_profile(needs.get(t.name) or need_from_folder(t))
                  for t in todo if t.cluster is not None})
    todo = [t for t in todo if not t.retrieval and t.cluster is None]
    wanted = [needs.get(t.name) or need_from_folder(t) for t in todo]
    total_need = sum(n.need_bytes for n in wanted) + sum(s.planned_mb * MB for s in fixed.values())
    over = total_need > budget_bytes
    # Models chosen by hand may need more than the configured share: they get no cache,
    # and the budget recorded is what they need (the memory guard still holds the limit).
    plan_budget = max(budget_bytes, total_need)
    profiles = plan(wanted, plan_budget, working_set(hw), intent=intent or "balanced", fixed=fixed)
    tiers = tuple(replace(t, serving=profiles[t.name]) if t.serving is None else t for t in stack.tiers)
    # (each need is rounded up to whole MB: the sum may pass the budget by a few MB)
    recorded = max(plan_budget // MB, sum(p.planned_mb for p in profiles.values()))
    return Planned(replace(stack, tiers=tiers, memory_budget_mb=recorded), budget_bytes, reason, over)


def profiles(p: Paths, stack: Stack, hw: HardwareProfile | None = None) -> dict[str, ServingProfile]:
    """Every tier's profile; a stack.yaml from before profiles is planned on the fly."""
    if all(t.serving is not None for t in stack.tiers):
        return {t.name: t.serving for t in stack.tiers if t.serving is not None}
    planned = plan_stack(p, stack, hw=hw).stack
    return {t.name: t.serving for t in planned.tiers if t.serving is not None}


def with_profiles(p: Paths, stack: Stack) -> Stack:
    """``stack`` whose tiers all carry a profile (rendering the command lines needs them)."""
    if all(t.serving is not None for t in stack.tiers):
        return stack
    found = profiles(p, stack)
    return replace(stack, tiers=tuple(replace(t, serving=found.get(t.name)) for t in stack.tiers))


# --- a cluster tier's hosts -----------------------------------------------------------


def layers_of(tier: Tier) -> int | None:
    """The model's layer count (config.json), for the pipeline split; None if unknown."""
    try:
        config = json.loads((Path(tier.path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cfg = config.get("text_config", config) if isinstance(config, dict) else {}
    layers = cfg.get("num_hidden_layers") if isinstance(cfg, dict) else None
    return layers if isinstance(layers, int) and layers > 0 else None


def host_shares(tier: Tier, profile: ServingProfile) -> list[HostShare]:
    """Each host's part of a cluster tier's plan (``core.cluster.host_shares``)."""
    assert tier.cluster is not None
    from mlx_stack.core.cluster import PIPELINE
    from mlx_stack.core.cluster import host_shares as cluster_shares

    return cluster_shares(tier.cluster, weights_mb=profile.weights_mb, kv_mb=profile.kv_mb,
                          cache_mb=profile.cache_memory_mb, need_mb=profile.need_mb,
                          layers=layers_of(tier) if tier.cluster.sharding == PIPELINE else None)


def planned_here(tier: Tier, profile: ServingProfile) -> ServingProfile:
    """What ``tier`` plans on this Mac: the whole plan, or its local ranks' shares."""
    if tier.cluster is None:
        return profile
    from mlx_stack.core.cluster import local_planned_mb  # (the cluster module: for cluster tiers only)

    return replace(profile, need_mb=local_planned_mb(host_shares(tier, profile), tier.cluster.hosts),
                   cache_memory_mb=0)


# --- the guard ------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryReading:
    """What the guard measures: the limit, and the resident memory of a process group."""

    limit_bytes: int
    limit_label: str
    rss_of: Callable[[int], int | None]


def reading(hw: HardwareProfile, host: Host | None = None) -> MemoryReading:
    """macOS: the GPU working-set limit (the processes' plans are summed against it);
    elsewhere: the memory available now (it already excludes what runs)."""
    from mlx_stack.system.host import real

    h = real(host)
    if hw.kind == "apple-silicon" and hw.gpu_limit_bytes:
        return MemoryReading(int(hw.gpu_limit_bytes), "GPU working-set limit", h.tree_rss)
    return MemoryReading(h.available_memory(), "available memory", h.tree_rss)


def check_start(p: Paths, stack: Stack, starting: Iterable[str], *, force: bool = False,
                read: Callable[[HardwareProfile], MemoryReading] | None = None,
                hw: HardwareProfile | None = None,
                assume_stopped: Iterable[str] = (), host: Host | None = None) -> None:
    """Refuse (ConflictError, exit 5) to start ``starting`` when the plans exceed the
    recorded budget or the tiers would not fit next to what runs; ``force`` skips it.
    ``assume_stopped``: running tiers to leave out (would it fit once they are stopped?)."""
    from mlx_stack.services.running import running_record as _running
    from mlx_stack.system.host import real

    h = real(host)
    gone = set(assume_stopped)

    def running_record(p: Paths, name: str) -> PidRecord | None:
        return None if name in gone else _running(p, name, host=h)

    names = [s for s in starting if s in stack.tier_names]
    if force or not names:
        return
    if hw is None:
        from mlx_stack.services import hardware

        hw = hardware.detect()
    whole = profiles(p, stack, hw=hw)
    for name in names:  # each host of a cluster tier against the memory it reports
        tier = stack.tier(name)
        if tier.cluster is not None:
            from mlx_stack.core.cluster import over_memory

            cluster_guard(name, over_memory(host_shares(tier, whole[name])))
    profs = {n: planned_here(stack.tier(n), pr) for n, pr in whole.items()}  # this Mac's part
    if stack.memory_budget_mb is not None:
        # On-demand tiers count only while they run (or are about to): together they may
        # plan more than the budget, which is what makes them on-demand.
        counted = {n: pr for n, pr in profs.items()
                   if n in names or not stack.tier(n).on_demand or running_record(p, n) is not None}
        check_budget(counted, stack.memory_budget_mb)
    r = read(hw) if read is not None else reading(hw, h)
    mac = r.limit_label.startswith("GPU")
    running: dict[str, int] = {}
    for t in stack.tiers:
        if t.name in names:
            continue
        record = running_record(p, t.name)
        if record is None:
            continue
        planned = profs[t.name].planned_mb
        if mac:
            running[t.name] = planned
        else:  # available memory already excludes what it holds; count what it may still grow
            rss = r.rss_of(record.pid) or 0
            running[t.name] = max(0, planned - rss // MB)
    guard(GuardInput(r.limit_bytes // MB, r.limit_label, {n: profs[n].planned_mb for n in names}, running))


# --- status -----------------------------------------------------------------------------

OVER_PLAN_MARGIN = 1.10  # RSS above plan x this is flagged (allocator slack, page rounding)


def measure(p: Paths, stack: Stack, statuses: list[ServiceStatus], *,
            rss_of: Callable[[int], int | None] | None = None,
            metal_of: Callable[[str], int | None] | None = None,
            host: Host | None = None) -> list[ServiceStatus]:
    """Each running tier's status with its measured memory beside its plan."""
    from mlx_stack.core.units import gb
    from mlx_stack.services.running import base_url
    from mlx_stack.system.host import real

    h = real(host)
    rss_of = rss_of or h.tree_rss
    metal_of = metal_of or h.metal_active_bytes
    try:
        profs = profiles(p, stack)
    except Exception:  # a plan that cannot be made must not hide the services' state
        profs = {}
    out = []
    for s in statuses:
        prof = profs.get(s.name)
        if s.kind != "tier" or prof is None or s.name not in stack.tier_names:
            out.append(s)
            continue
        prof = planned_here(stack.tier(s.name), prof)  # a cluster tier: its local ranks
        planned = prof.planned_mb * MB
        rss = rss_of(s.pid) if s.pid else None
        answering = s.pid and s.state in ("healthy", "degraded")  # a wedged one would only time out
        metal = metal_of(base_url(stack, s.name, host=h)) if answering else None
        used = max(rss or 0, metal or 0)
        over = used > planned * OVER_PLAN_MARGIN
        detail = s.detail
        if over:
            flag = f"over plan: {gb(used)} used, {gb(planned)} planned"
            detail = f"{flag}; {detail}" if detail else flag
        out.append(replace(s, rss_bytes=rss, metal_bytes=metal, planned_bytes=planned, over_plan=over,
                           detail=detail))
    return out
