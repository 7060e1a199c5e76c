"""Benchmark arithmetic and verdicts (pure, no I/O).

The engine (``services.bench``) streams requests and records one :class:`Sample`
per request; everything else happens here: the fixed prompt set, aggregation into
tokens/s and time to first token, PASS/WARN/FAIL against a reference (the catalog's
measurement or the estimator's prediction) and the text bar chart. The result and
its saved form live in :mod:`mlx_stack.core.bench_result`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

# Verdict thresholds, stated in the output as well. Speeds: measured / reference.
SPEED_PASS = 0.80  # PASS at >= 80% of the reference
SPEED_WARN = 0.50  # WARN at >= 50%, FAIL below
# Memory: measured / reference (lower is better).
MEMORY_PASS = 1.20  # PASS at <= 120% of the reference
MEMORY_WARN = 1.50  # WARN at <= 150%, FAIL above

PASS, WARN, FAIL, NA = "PASS", "WARN", "FAIL", "N/A"


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str


_DOC_SENTENCES = (
    "The museum opened its new wing in the spring after four years of building work.",
    "Visitors enter through a glass hall that faces the river and the old harbour cranes.",
    "The first rooms show tools, maps and ledgers from the shipping companies of the port.",
    "A second floor is given to the engineers who designed the locks and the swing bridges.",
    "Curators chose to keep the original brick walls visible wherever they were sound.",
    "Heating comes from pumps that draw warmth from the river water through the winter.",
    "School groups book morning slots, and the afternoons stay open for everyone else.",
    "The café on the roof closes an hour before the galleries so the staff can tidy up.",
    "Critics praised the lighting but found the labels too small for older visitors.",
    "The board has promised larger labels and an audio guide in six languages next year.",
)


def _document(sentences: int) -> str:
    return " ".join(_DOC_SENTENCES[i % len(_DOC_SENTENCES)] + f" (note {i + 1})" for i in range(sentences))


# The fixed prompt set, shortest first; `--prompts N` takes the first N.
PROMPTS: tuple[Prompt, ...] = (
    Prompt("short", "Explain in two sentences why the sky is blue."),
    Prompt(
        "code",
        "Write a Python function that tells whether a string is a palindrome, ignoring case "
        "and punctuation. Add a docstring and two usage examples.",
    ),
    Prompt("summary", "Summarize the following text in five bullet points.\n\n" + _document(12)),
    Prompt("long", "Read this report and list its key facts, then say what is missing.\n\n"
           + _document(60)),
)
CONCURRENCY_PROMPT = PROMPTS[1]  # every concurrent stream asks this one


def prompt_set(count: int | None = None) -> tuple[Prompt, ...]:
    """The first ``count`` prompts of the fixed set (all by default)."""
    if count is None:
        return PROMPTS
    return PROMPTS[: max(1, min(count, len(PROMPTS)))]


def tagged(prompt: Prompt, tag: str) -> str:
    """The prompt text made unique by a leading tag, so no request hits the prefix cache."""
    return f"[run {tag}] {prompt.text}"


@dataclass(frozen=True)
class Sample:
    """One streamed request as the client saw it; times in seconds from sending it."""

    prompt: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float  # until the first generated token
    total_s: float  # until the end of the stream

    @property
    def decode_s(self) -> float:
        return max(0.0, self.total_s - self.ttft_s)

    @property
    def gen_tps(self) -> float:
        """Decode speed: tokens after the first, over the time after the first."""
        if self.completion_tokens < 2 or self.decode_s <= 0:
            return 0.0
        return (self.completion_tokens - 1) / self.decode_s


@dataclass(frozen=True)
class SingleStream:
    """Sequential requests (one at a time), aggregated."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    prompt_tps: float  # prefill speed on the longest prompt of the set
    gen_tps: float  # decode speed over every request
    ttft_median_s: float
    ttft_max_s: float
    total_s: float  # sum of request times


@dataclass(frozen=True)
class ConcurrencyLevel:
    streams: int
    requests: int
    completion_tokens: int
    wall_s: float  # first request sent -> last stream ended
    aggregate_tps: float  # generated tokens of all streams / wall time
    per_stream_tps: float  # mean decode speed of one stream
    ttft_median_s: float


def summarize_single(samples: list[Sample]) -> SingleStream:
    """Aggregate sequential samples. Needs at least one sample."""
    if not samples:
        raise ValueError("no samples")
    longest = max(s.prompt_tokens for s in samples)
    prefill = [s for s in samples if s.prompt_tokens == longest]
    prefill_time = sum(s.ttft_s for s in prefill)
    decoding = [s for s in samples if s.completion_tokens >= 2 and s.decode_s > 0]
    decode_time = sum(s.decode_s for s in decoding)
    ttfts = [s.ttft_s for s in samples]
    return SingleStream(
        requests=len(samples),
        prompt_tokens=sum(s.prompt_tokens for s in samples),
        completion_tokens=sum(s.completion_tokens for s in samples),
        prompt_tps=sum(s.prompt_tokens for s in prefill) / prefill_time if prefill_time > 0 else 0.0,
        gen_tps=sum(s.completion_tokens - 1 for s in decoding) / decode_time if decode_time > 0 else 0.0,
        ttft_median_s=statistics.median(ttfts),
        ttft_max_s=max(ttfts),
        total_s=sum(s.total_s for s in samples),
    )


def summarize_level(streams: int, samples: list[Sample], wall_s: float) -> ConcurrencyLevel:
    """Aggregate the samples of ``streams`` requests sent at once over ``wall_s`` seconds."""
    if not samples:
        raise ValueError("no samples")
    tokens = sum(s.completion_tokens for s in samples)
    speeds = [s.gen_tps for s in samples if s.gen_tps > 0]
    return ConcurrencyLevel(
        streams=streams,
        requests=len(samples),
        completion_tokens=tokens,
        wall_s=wall_s,
        aggregate_tps=tokens / wall_s if wall_s > 0 else 0.0,
        per_stream_tps=statistics.fmean(speeds) if speeds else 0.0,
        ttft_median_s=statistics.median(s.ttft_s for s in samples),
    )


def parse_levels(text: str) -> tuple[int, ...]:
    """``"1,4,8"`` -> (1, 4, 8); ValueError with a reason on anything else."""
    levels: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= 64:
            raise ValueError(f"{part!r} is not a number of streams from 1 to 64")
        if int(part) not in levels:
            levels.append(int(part))
    return tuple(sorted(levels))


@dataclass(frozen=True)
class Reference:
    """What this model should do on this hardware, and where that figure comes from."""

    source: str  # e.g. "catalog measurement (M4 Pro, 64 GB)" or "estimate"
    gen_tps: float | None = None
    prompt_tps: float | None = None
    memory_gb: float | None = None


@dataclass(frozen=True)
class Verdict:
    metric: str
    measured: float
    reference: float | None
    status: str  # PASS / WARN / FAIL / N/A
    rule: str  # the threshold, in words

    @property
    def ratio(self) -> float | None:
        if not self.reference:
            return None
        return self.measured / self.reference


SPEED_RULE = f"PASS >= {SPEED_PASS:.0%}, WARN >= {SPEED_WARN:.0%} of reference, else FAIL"
MEMORY_RULE = f"PASS <= {MEMORY_PASS:.0%}, WARN <= {MEMORY_WARN:.0%} of reference, else FAIL"


def speed_verdict(metric: str, measured: float, reference: float | None) -> Verdict:
    if not reference or reference <= 0:
        return Verdict(metric, measured, None, NA, "no reference for this model on this hardware")
    ratio = measured / reference
    status = PASS if ratio >= SPEED_PASS else WARN if ratio >= SPEED_WARN else FAIL
    return Verdict(metric, measured, reference, status, SPEED_RULE)


def memory_verdict(measured_gb: float, reference_gb: float | None) -> Verdict:
    if not reference_gb or reference_gb <= 0 or measured_gb <= 0:
        why = "no reference for this model on this hardware" if measured_gb > 0 else "not measured"
        return Verdict("peak memory (GB)", measured_gb, reference_gb or None, NA, why)
    ratio = measured_gb / reference_gb
    status = PASS if ratio <= MEMORY_PASS else WARN if ratio <= MEMORY_WARN else FAIL
    return Verdict("peak memory (GB)", measured_gb, reference_gb, status, MEMORY_RULE)


def verdicts(single: SingleStream, peak_memory_gb: float, ref: Reference | None) -> list[Verdict]:
    ref = ref or Reference("none")
    return [
        speed_verdict("generation tok/s", single.gen_tps, ref.gen_tps),
        speed_verdict("prompt tok/s", single.prompt_tps, ref.prompt_tps),
        memory_verdict(peak_memory_gb, ref.memory_gb),
    ]


def bar_chart(levels: list[ConcurrencyLevel], width: int = 40, bar: str = "█") -> str:
    """Aggregate generation tokens/s per number of concurrent streams, as text lines."""
    if not levels:
        return ""
    top = max(lv.aggregate_tps for lv in levels)
    base = levels[0].aggregate_tps if levels[0].streams == 1 else 0.0
    label_w = max(len(str(lv.streams)) for lv in levels)
    num_w = max(len(f"{lv.aggregate_tps:,.1f}") for lv in levels)
    lines = ["generation tok/s, all streams together, by concurrent streams"]
    for lv in levels:
        n = round(width * lv.aggregate_tps / top) if top > 0 else 0
        if lv.aggregate_tps > 0:
            n = max(n, 1)
        speedup = f"  x{lv.aggregate_tps / base:.1f}" if base > 0 else ""
        lines.append(f"{lv.streams:>{label_w}} | {bar * n:<{width}} {lv.aggregate_tps:>{num_w},.1f}{speedup}")
    return "\n".join(lines)
