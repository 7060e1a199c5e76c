"""The front door's counts as Prometheus text, and back (pure, no I/O).

The front door keeps its counts in memory and serves them at ``/metrics`` (with the
stack key); `status` fetches that page and reads it with :func:`summary`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TypedDict, cast

PREFIX = "mlx_stack_gateway_"
# Per-tier counters: (metric name, help).
COUNTERS = (
    ("requests", "requests this tier answered (any status)"),
    ("fallbacks_out", "requests handed on to the next upstream after this one failed before the first byte"),
    ("fallbacks_in", "requests this upstream took over from another"),
    ("client_errors", "4xx answers passed back to the client"),
    ("server_errors", "server-side failures (refused, reset, 5xx, frozen, cut mid-stream)"),
    ("stream_errors", "streams cut after the first byte"),
    ("continuations", "streams cut on another tier and finished on this one"),
    ("generated_tokens", "completion tokens (streams: one per content event)"),
    ("cold_starts", "times the front door started this on-demand tier for a request"),
    ("cold_start_failures", "cold starts that failed (no room, exited, never ready): the request fell back"),
    ("evictions", "times this idle on-demand tier was stopped to make room for another"),
    ("idle_unloads", "times this on-demand tier was stopped after its idle timeout"),
    ("client_gone", "requests whose client left before the answer ended (the tier was stopped)"),
    ("rejected", "requests answered 429 because this tier's queue was full"),
)
# Tier states for the state gauge (one series per state, 1 for the current one).
TIER_STATES = ("up", "cooling", "asleep")
HISTOGRAMS = (
    ("ttft_seconds", "time to the first byte of the answer"),
    ("duration_seconds", "time to the end of the answer"),
)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, math.inf)


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(bound)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class TierSeries(TypedDict):
    """One tier's numbers for :func:`render`."""

    counters: Mapping[str, int]
    hist: Mapping[str, tuple[Sequence[int], float, int]]  # bucket counts, sum, count


class Gauge(TypedDict):
    """One gauge and its samples for :func:`render`: (labels, value) pairs."""

    name: str
    help: str
    samples: Sequence[tuple[Mapping[str, str], float]]


def tier_gauges(states: Mapping[str, str], inflight: Mapping[str, int], queued: Mapping[str, int],
                connections: int, busy: int) -> list[Gauge]:
    """The front door's gauges: each tier's state (every configured tier, from the start),
    its requests in flight and waiting, and the open client connections."""
    return [
        {"name": "tier_up", "help": "1 when the tier takes requests (not cooling down, not asleep)",
         "samples": [({"tier": t}, 1.0 if st == "up" else 0.0) for t, st in states.items()]},
        {"name": "tier_state", "help": f"the tier's state: 1 on the current one ({', '.join(TIER_STATES)})",
         "samples": [({"tier": t, "state": s}, 1.0 if st == s else 0.0)
                     for t, st in states.items() for s in TIER_STATES]},
        {"name": "tier_inflight", "help": "requests under way on the tier (through the front door)",
         "samples": [({"tier": t}, float(inflight.get(t, 0))) for t in states]},
        {"name": "tier_queued", "help": "requests waiting for a place on the tier",
         "samples": [({"tier": t}, float(queued.get(t, 0))) for t in states]},
        {"name": "open_connections", "help": "client connections open",
         "samples": [({}, float(connections))]},
        {"name": "busy_connections", "help": "client connections with a request under way",
         "samples": [({}, float(busy))]},
    ]


def peer_gauges(rows: Sequence[Mapping[str, object]]) -> list[Gauge]:
    """Each peer's state (1 when usable), the requests under way on it from this node, the
    requests it answered, and one sample per tier it serves (issue 26)."""
    def tiers(row: Mapping[str, object]) -> list[str]:
        value = row.get("tiers")
        items = cast("list[object]", value) if isinstance(value, list) else []
        return [t for t in items if isinstance(t, str)]

    def number(value: object) -> float:
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0

    return [
        {"name": "peer_up", "help": "1 when the peer answers its checks (its tiers are candidates)",
         "samples": [({"peer": str(r.get("name"))}, 1.0 if r.get("state") == "up" else 0.0) for r in rows]},
        {"name": "peer_outstanding", "help": "requests under way on the peer from this front door",
         "samples": [({"peer": str(r.get("name"))}, number(r.get("outstanding"))) for r in rows]},
        {"name": "peer_served", "help": "requests the peer answered for this front door",
         "samples": [({"peer": str(r.get("name"))}, number(r.get("served"))) for r in rows]},
        {"name": "peer_tier", "help": "1 per tier the peer serves (as its last check said)",
         "samples": [({"peer": str(r.get("name")), "tier": t}, 1.0) for r in rows for t in tiers(r)]},
    ]


def cache_stats(page: bytes) -> tuple[float, float] | None:
    """(hits, misses) of a vllm-mlx tier's prefix cache from its own /metrics page."""
    found: dict[str, float] = {}
    for line in page.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(" ")
        if name in ("vllm_mlx_cache_hits", "vllm_mlx_cache_misses"):
            try:
                found[name] = float(value)
            except ValueError:
                continue
    if len(found) < 2:
        return None
    return found["vllm_mlx_cache_hits"], found["vllm_mlx_cache_misses"]


def cache_gauges(stats: Mapping[str, tuple[float, float]]) -> list[Gauge]:
    """The tiers' own prefix-cache counts (as each tier reports them since its start)."""
    return [
        {"name": "tier_prefix_cache_hits", "help": "prefix-cache hits the tier reports (since start)",
         "samples": [({"tier": t}, hits) for t, (hits, _) in sorted(stats.items())]},
        {"name": "tier_prefix_cache_misses", "help": "prefix-cache misses the tier reports (since start)",
         "samples": [({"tier": t}, misses) for t, (_, misses) in sorted(stats.items())]},
    ]


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items()) + "}" if labels else ""


def render(tiers: Mapping[str, TierSeries], auto: Mapping[tuple[str, str], int],
           started_at: float, gauges: Sequence[Gauge] = ()) -> str:
    """Prometheus text for per-tier ``counters`` (name -> int), ``hist`` (name -> (bucket counts,
    sum, count)), ``auto`` decisions (tier, reason) -> count, and ``gauges``."""
    out: list[str] = []
    for g in gauges:
        out += [f"# HELP {PREFIX}{g['name']} {g['help']}", f"# TYPE {PREFIX}{g['name']} gauge"]
        out += [f"{PREFIX}{g['name']}{_labels(labels)} {value:g}" for labels, value in g["samples"]]
    for name, text in COUNTERS:
        out += [f"# HELP {PREFIX}{name}_total {text}", f"# TYPE {PREFIX}{name}_total counter"]
        for tier, m in tiers.items():
            out.append(f'{PREFIX}{name}_total{{tier="{_esc(tier)}"}} {m["counters"].get(name, 0)}')
    for name, text in HISTOGRAMS:
        out += [f"# HELP {PREFIX}{name} {text}", f"# TYPE {PREFIX}{name} histogram"]
        for tier, m in tiers.items():
            counts, total, n = m["hist"][name]
            cumulative = 0
            for bound, c in zip(BUCKETS, counts, strict=True):
                cumulative += c
                out.append(f'{PREFIX}{name}_bucket{{tier="{_esc(tier)}",le="{_le(bound)}"}} {cumulative}')
            out.append(f'{PREFIX}{name}_sum{{tier="{_esc(tier)}"}} {total:.6f}')
            out.append(f'{PREFIX}{name}_count{{tier="{_esc(tier)}"}} {n}')
    out += [f"# HELP {PREFIX}auto_total requests for `auto`, by chosen tier and reason",
            f"# TYPE {PREFIX}auto_total counter"]
    for (tier, reason), n in sorted(auto.items()):
        out.append(f'{PREFIX}auto_total{{tier="{_esc(tier)}",reason="{_esc(reason)}"}} {n}')
    out += [f"# TYPE {PREFIX}start_time_seconds gauge", f"{PREFIX}start_time_seconds {started_at:.3f}"]
    return "\n".join(out) + "\n"


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(metric, labels, value) for every sample line; malformed lines are skipped."""
    samples: list[tuple[str, dict[str, str], float]] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels: dict[str, str] = {}
        for part in _split_labels(rest.rstrip("}")):
            key, _, raw = part.partition("=")
            labels[key.strip()] = raw.strip().strip('"')
        try:
            samples.append((name, labels, float(value)))
        except ValueError:
            continue
    return samples


def _split_labels(text: str) -> Iterable[str]:
    return [p for p in text.split('",') if p] if text else []


class Counts(TypedDict):
    """A front door's counts as `status` shows them (:func:`summary`)."""

    started_at: float | None
    tiers: dict[str, dict[str, int]]  # tier -> counter (requests, fallbacks_out, ...) -> count
    auto: dict[str, int]  # `auto` requests by chosen tier
    auto_reasons: dict[str, int]  # ... and by reason
    # peer -> {"up": 0/1, "outstanding": n, "served": n, "tiers": [names]} (issue 26)
    peers: dict[str, dict[str, object]]


def summary(text: str) -> Counts:
    """What `status` shows: per-tier counters and TTFT p50 estimates, `auto` decisions."""
    tiers: dict[str, dict[str, int]] = {}
    auto: dict[str, int] = {}
    reasons: dict[str, int] = {}
    started = None
    peers: dict[str, dict[str, object]] = {}
    for name, labels, value in parse(text):
        short = name.removeprefix(PREFIX)
        tier = labels.get("tier")
        peer = labels.get("peer")
        if peer is not None and short.startswith("peer_"):
            row = peers.setdefault(peer, {"up": 0, "outstanding": 0, "served": 0, "tiers": []})
            if short == "peer_tier" and tier:
                cast("list[str]", row["tiers"]).append(tier)
            elif short in ("peer_up", "peer_outstanding", "peer_served"):
                row[short.removeprefix("peer_")] = int(value)
        elif short == "start_time_seconds":
            started = value
        elif short == "auto_total" and tier:
            auto[tier] = auto.get(tier, 0) + int(value)
            reason = labels.get("reason", "?")
            reasons[reason] = reasons.get(reason, 0) + int(value)
        elif short.endswith("_total") and tier:
            tiers.setdefault(tier, {})[short.removesuffix("_total")] = int(value)
    return {"started_at": started, "tiers": dict(sorted(tiers.items())), "auto": dict(sorted(auto.items())),
            "auto_reasons": dict(sorted(reasons.items())), "peers": dict(sorted(peers.items()))}
