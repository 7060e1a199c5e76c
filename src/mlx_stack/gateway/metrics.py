"""The front door's counts, in memory: per upstream, plus `auto` decisions.

Only integers and floats are bumped on the event loop; ``/metrics`` renders them on
demand (:mod:`mlx_stack.core.metrics_text`). Nothing is written to disk.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any, TypedDict

from mlx_stack.core.metrics_text import BUCKETS, HISTOGRAMS, Gauge, TierSeries, render

EVENTS_KEPT = 50
COALESCE_S = 60.0  # the same fallback within this long adds to the last event's count


class Event(TypedDict):
    """A line of the dashboard's event list (a restart; a fallback adds its count)."""

    kind: str
    at: float
    tier: str
    to: str | None
    reason: str


class FallbackEvent(Event):
    count: int  # the same fallback again within COALESCE_S: one line, counted


class _Tier:
    __slots__ = ("counters", "hist")

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        # per histogram [bucket counts, sum, count], updated in place on the hot path: a
        # list of mixed types, so Any (a class per histogram would cost an attribute lookup each)
        self.hist: dict[str, list[Any]] = {name: [[0] * len(BUCKETS), 0.0, 0] for name, _ in HISTOGRAMS}


class Metrics:
    def __init__(self) -> None:
        self.started_at = time.time()
        self.tiers: dict[str, _Tier] = {}
        self.auto: Counter[tuple[str, str]] = Counter()
        self.events: deque[FallbackEvent] = deque(maxlen=EVENTS_KEPT)  # recent fallbacks, for the dashboard

    def _tier(self, name: str) -> _Tier:
        t = self.tiers.get(name)
        if t is None:
            t = self.tiers[name] = _Tier()
        return t

    def bump(self, tier: str, counter: str, n: int = 1) -> None:
        self._tier(tier).counters[counter] += n

    def observe(self, tier: str, hist: str, seconds: float) -> None:
        h = self._tier(tier).hist[hist]
        h[0][bisect.bisect_left(BUCKETS, seconds)] += 1
        h[1] += seconds
        h[2] += 1

    def fallback(self, tier: str, to: str | None, why: str) -> None:
        """A request left ``tier`` for ``to`` (None: nothing could answer). Off the hot path:
        only called when a fallback happened."""
        now = round(time.time(), 3)
        why = why[:300]
        last = self.events[-1] if self.events else None
        if (last is not None and last["tier"] == tier and last["to"] == to and last["reason"] == why
                and now - last["at"] < COALESCE_S):  # the same fallback again: one line, counted
            last["count"] += 1
            last["at"] = now
            return
        self.events.append({"kind": "fallback", "at": now, "tier": tier, "to": to, "reason": why, "count": 1})

    def routed_auto(self, tier: str, reason: str) -> None:
        self.auto[(tier, reason)] += 1

    def text(self, configured: Iterable[str] = (), gauges: Sequence[Gauge] = ()) -> str:
        """The Prometheus page: every ``configured`` tier (zeros until its first request)
        and any other tier seen, plus ``gauges``."""
        for name in configured:
            self._tier(name)
        tiers: dict[str, TierSeries] = {
            name: {"counters": t.counters, "hist": {k: (v[0], v[1], v[2]) for k, v in t.hist.items()}}
            for name, t in sorted(self.tiers.items())}
        return render(tiers, self.auto, self.started_at, gauges)
