"""The dashboard's numbers from the front door's counters (pure, no I/O).

The front door copies its per-tier counters every ``SAMPLE_S`` seconds into a bounded
history (15 minutes); the dashboard page and `status --watch` read one JSON view made
here: current rates (the live counters against the sample ~``RATE_WINDOW_S`` ago), TTFT
p50 from the histogram buckets, the series for the plots, and each tier's state.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlx_stack.core.metrics_text import BUCKETS
from mlx_stack.core.service_state import DOWN, UP, WARN, ServiceState

SAMPLE_S = 5.0
HISTORY_S = 15 * 60.0
HISTORY_LEN = int(HISTORY_S / SAMPLE_S) + 1
RATE_WINDOW_S = 10.0  # requests/s and tok/s: over about the last 10 s
TTFT_WINDOW_S = 60.0  # TTFT p50: over about the last minute
VIEW_SCHEMA = 1
# The counters a sample keeps (cumulative since the front door started).
SAMPLED = ("requests", "generated_tokens", "fallbacks_in", "fallbacks_out", "client_errors", "server_errors")

# The states the page and --watch colour (core.service_state); any other string is shown
# as it comes.
UP_STATES: frozenset[str] = UP
WARN_STATES: frozenset[str] = WARN
DOWN_STATES: frozenset[str] = DOWN


@dataclass(frozen=True)
class TierSample:
    counters: tuple[int, ...]  # in SAMPLED order
    ttft: tuple[int, ...]  # per-bucket counts (not cumulative), BUCKETS order


@dataclass(frozen=True)
class Sample:
    at: float  # epoch seconds
    tiers: Mapping[str, TierSample]


ZERO = TierSample((0,) * len(SAMPLED), (0,) * len(BUCKETS))


def state_class(state: str) -> str:
    """``up``, ``warn``, ``down`` or ``other`` (an unknown state string, shown neutral)."""
    if state in UP_STATES:
        return "up"
    if state in WARN_STATES:
        return "warn"
    if state in DOWN_STATES:
        return "down"
    return "other"


def p50(buckets: Sequence[int]) -> float | None:
    """The median of a histogram's per-bucket counts, interpolated inside its bucket."""
    total = sum(buckets)
    if total <= 0:
        return None
    half = total / 2
    seen = 0
    lower = 0.0
    for bound, n in zip(BUCKETS, buckets, strict=False):
        if n and seen + n >= half:
            if bound == math.inf:
                return lower
            return lower + (bound - lower) * (half - seen) / n
        seen += n
        lower = bound if bound != math.inf else lower
    return lower


def _minus(a: Sequence[int], b: Sequence[int]) -> list[int]:
    return [max(0, x - y) for x, y in zip(a, b, strict=False)]


def _back(history: Sequence[Sample], now: float, seconds: float) -> Sample | None:
    """The newest sample at least ``seconds`` old; None when the front door is younger
    (then the counts since it started are used)."""
    for s in reversed(history):
        if now - s.at >= seconds:
            return s
    return None


def rates(live: TierSample, history: Sequence[Sample], tier: str, now: float,
          started_at: float) -> dict[str, object]:
    """requests/s, tok/s (over ~RATE_WINDOW_S) and TTFT p50 (over ~TTFT_WINDOW_S) now."""
    zero = ZERO
    out: dict[str, object] = {}
    base = _back(history, now, RATE_WINDOW_S)
    then, at = (base.tiers.get(tier, zero), base.at) if base else (zero, started_at)
    span = max(now - at, 1e-3)
    d = _minus(live.counters, then.counters)
    out["requests_per_s"] = round(d[0] / span, 3)
    out["tokens_per_s"] = round(d[1] / span, 2)
    base = _back(history, now, TTFT_WINDOW_S)
    then = base.tiers.get(tier, zero) if base else zero
    ttft = p50(_minus(live.ttft, then.ttft))
    out["ttft_p50_s"] = None if ttft is None else round(ttft, 4)
    return out


def series(history: Sequence[Sample], tiers: Sequence[str]) -> dict[str, object]:
    """The plots: per interval between samples, tok/s and TTFT p50 (None: no request)."""
    zero = ZERO
    times = [round(s.at, 3) for s in list(history)[1:]]
    out: dict[str, dict[str, list[float | None]]] = {}
    for tier in tiers:
        tok: list[float | None] = []
        ttft: list[float | None] = []
        for prev, cur in itertools.pairwise(history):
            a, b = prev.tiers.get(tier, zero), cur.tiers.get(tier, zero)
            span = max(cur.at - prev.at, 1e-3)
            tok.append(round(max(0, b.counters[1] - a.counters[1]) / span, 2))
            m = p50(_minus(b.ttft, a.ttft))
            ttft.append(None if m is None else round(m, 4))
        out[tier] = {"tokens_per_s": tok, "ttft_p50_s": ttft}
    return {"t": times, "tiers": out}


def counts(live: TierSample) -> dict[str, int]:
    c = dict(zip(SAMPLED, live.counters, strict=True))
    return {"requests": c["requests"], "generated_tokens": c["generated_tokens"],
            "fallbacks_in": c["fallbacks_in"], "fallbacks_out": c["fallbacks_out"],
            "errors": c["client_errors"] + c["server_errors"], "server_errors": c["server_errors"]}


def tier_state(*, has_record: bool, process_alive: bool | None, answers: bool,
               watchdog: Mapping[str, object] | None = None) -> tuple[str, str]:
    """(state, detail) as `status` words it: healthy, down (alive, not answering),
    crashed (gone while it should run), stopped; the watchdog's own state string
    (flapping, backoff, or any other, e.g. sleeping) wins over a failed check."""
    if answers:
        return ServiceState.HEALTHY, ""
    wd_state = str(watchdog.get("state") or "") if watchdog else ""
    wd_reason = str(watchdog.get("reason") or "") if watchdog else ""
    quiet = (ServiceState.HEALTHY, ServiceState.STARTING, ServiceState.STOPPED, ServiceState.UNKNOWN)
    if wd_state and wd_state not in quiet:
        return wd_state, wd_reason
    if not has_record:
        return ServiceState.STOPPED, ""
    if process_alive is False:
        return ServiceState.CRASHED, "the process is gone"
    return ServiceState.DOWN, "the process runs but does not answer /health"
