"""A benchmark result and its saved form (pure, no I/O).

A saved result is trusted only after :func:`parse_saved`: right schema and hardware
profile, every figure present and positive (a saved memory of zero or a missing field
is rejected, never trusted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mlx_stack.core.bench import ConcurrencyLevel, Reference, SingleStream, Verdict
from mlx_stack.core.validate import Fields
from mlx_stack.json_types import JSON, JSONObject, as_object

RESULT_SCHEMA = 1
GB = 1_000_000_000  # memory figures are decimal GB, like the estimator's


@dataclass(frozen=True)
class BenchResult:
    model: str  # the key the recommender knows: catalog id, hub repo, or "local:<dir name>"
    target: str  # what the user typed
    target_kind: str  # "tier" | "catalog" | "path"
    profile: str  # hardware profile key
    hardware: str  # the profile in words
    measured_at: str  # ISO 8601, UTC
    iterations: int
    max_tokens: int
    prompts: tuple[str, ...]
    single: SingleStream
    concurrency: tuple[ConcurrencyLevel, ...]
    peak_memory_gb: float  # max of the two figures below
    reference: Reference | None = None
    verdicts: tuple[Verdict, ...] = field(default_factory=tuple)
    quant: str | None = None  # int4 / int8 / bf16 when known
    peak_rss_gb: float | None = None  # resident memory of the server's process tree, peak
    mlx_peak_gb: float | None = None  # MLX's own peak as the server reports it (Metal; None on CPU)

    def to_dict(self) -> JSONObject:
        def _lv(lv: ConcurrencyLevel) -> JSON:
            return {k: _round(v) for k, v in lv.__dict__.items()}

        return {
            "schema": RESULT_SCHEMA,
            "model": self.model,
            "quant": self.quant,
            "target": self.target,
            "target_kind": self.target_kind,
            "profile": self.profile,
            "hardware": self.hardware,
            "measured_at": self.measured_at,
            "settings": {"iterations": self.iterations, "max_tokens": self.max_tokens,
                         "prompts": list(self.prompts)},
            "gen_tok_s": _round(self.single.gen_tps),
            "prompt_tok_s": _round(self.single.prompt_tps),
            "ttft_s": _round(self.single.ttft_median_s),
            "peak_memory_gb": _round(self.peak_memory_gb),
            "peak_rss_gb": _round(self.peak_rss_gb),
            "mlx_peak_gb": _round(self.mlx_peak_gb),
            "single_stream": {k: _round(v) for k, v in self.single.__dict__.items()},
            "concurrency": [_lv(lv) for lv in self.concurrency],
            "reference": None if self.reference is None else dict(self.reference.__dict__),
            "verdicts": [
                {"metric": v.metric, "measured": _round(v.measured), "reference": _round(v.reference),
                 "status": v.status, "rule": v.rule}
                for v in self.verdicts
            ],
        }


def _round(value: JSON) -> JSON:
    return round(value, 4) if isinstance(value, float) else value


@dataclass(frozen=True)
class SavedMeasurement:
    """What the recommender takes from a saved result, trusted only after validation."""

    model: str
    gen_tok_s: float
    prompt_tok_s: float
    memory_gb: float
    measured_at: str
    quant: str | None = None

    # The names scoring.recommend(saved=...) reads.
    @property
    def decode_tok_s(self) -> float:
        return self.gen_tok_s

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * GB)


EMBEDDING = "embedding"  # `kind` of a saved embedding-tier result (absent: a chat model)


@dataclass(frozen=True)
class SavedEmbedding:
    """A saved `bench TIER --save` of an embedding tier (issue 25): what the recommender takes
    from it (its measured memory replaces the estimate; its speed is shown in the reason)."""

    model: str
    texts_s: float  # at batch 64
    tokens_s: float  # at batch 64, the server's own token count
    memory_gb: float  # peak resident memory of the tier's process tree
    measured_at: str
    quant: str | None = None
    kind: str = EMBEDDING

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * GB)


def embedding_result(*, model: str, quant: str | None, target: str, profile: str, hardware: str,
                     measured_at: str, levels: list[JSONObject], peak_rss_gb: float) -> JSONObject:
    """The saved form of an embedding bench: every level, and the batch-64 figures on top."""
    last = levels[-1] if levels else {}
    return {"schema": RESULT_SCHEMA, "kind": EMBEDDING, "model": model, "quant": quant, "target": target,
            "target_kind": "tier", "profile": profile, "hardware": hardware, "measured_at": measured_at,
            "batch": last.get("batch"), "texts_s": last.get("texts_s"), "tokens_s": last.get("tokens_s"),
            "peak_memory_gb": _round(peak_rss_gb), "peak_rss_gb": _round(peak_rss_gb),
            "levels": list[JSON](levels)}


def _positive(f: Fields, keys: tuple[str, ...]) -> dict[str, float]:
    numbers: dict[str, float] = {}
    for key in keys:
        value = f.peek(key, (float, int))
        if value is None:
            f.fail(key, f"missing field {key!r}")
        if not math.isfinite(value) or value <= 0:
            f.fail(key, f"{key} is {value}, not a positive measurement")
        numbers[key] = float(value)
    return numbers


def parse_saved(data: object, profile: str) -> SavedMeasurement | SavedEmbedding:
    """Validate a saved result for ``profile``; ValueError (with the reason) if not usable."""
    obj = as_object(data)
    if obj is None:
        raise ValueError("not a JSON object")
    f = Fields(obj, error=lambda _where, problem: ValueError(problem))
    if f.data.get("schema") != RESULT_SCHEMA:
        f.fail("schema", f"unknown schema {f.data.get('schema')!r}")
    if f.data.get("profile") != profile:
        f.fail("profile", f"measured on another hardware profile ({f.data.get('profile')!r})")
    model = f.peek("model", str)
    if not model:
        f.fail("model", "missing field 'model'")
    kind = f.data.get("kind")
    if kind == EMBEDDING:
        got = _positive(f, ("texts_s", "tokens_s", "peak_memory_gb"))
        return SavedEmbedding(model=model, texts_s=got["texts_s"], tokens_s=got["tokens_s"],
                              memory_gb=got["peak_memory_gb"], measured_at=str(f.data.get("measured_at", "")),
                              quant=f.peek("quant", str))
    if kind is not None:
        f.fail("kind", f"unknown kind {kind!r}")
    numbers = _positive(f, ("gen_tok_s", "prompt_tok_s", "peak_memory_gb"))
    return SavedMeasurement(
        model=model,
        gen_tok_s=numbers["gen_tok_s"],
        prompt_tok_s=numbers["prompt_tok_s"],
        memory_gb=numbers["peak_memory_gb"],
        measured_at=str(f.data.get("measured_at", "")),
        quant=f.peek("quant", str),
    )


def slug(text: str) -> str:
    """A file-name-safe form of a model or profile key."""
    text = text.strip().lower().replace("/", "--")
    out = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
    return out.strip("-.") or "unnamed"
