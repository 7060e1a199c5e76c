"""`mlx-stack bench TIER` for a running embedding tier (issue 25): texts/s and tokens/s at
batch 1, 16 and 64, and the latency p50 of each, measured against the tier's own port.

Fixed texts (about 60 words each, unique per request so nothing is reused), one client,
``rounds`` requests per batch size after one warm-up request. Tokens are the server's own
count (``usage.prompt_tokens``). The peak resident memory of the tier's process tree is
sampled throughout. ``save``: the result is stored like a chat bench (``kind: embedding``,
``bench_store.save_embedding``); the recommender then plans that model with its measured
memory instead of the estimate and shows its measured speed (``core.retrieval_plan``).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mlx_stack.core import bench_result
from mlx_stack.core.bench_result import GB
from mlx_stack.core.stack import EMBEDDING, Stack
from mlx_stack.errors import ServiceError
from mlx_stack.paths import Paths
from mlx_stack.system import probes

if TYPE_CHECKING:
    from mlx_stack.json_types import JSONObject

BATCHES = (1, 16, 64)
_TEXT = ("local models answer requests on unified memory while the encoder turns each document "
         "into a vector that retrieval compares with the query before the reranker orders the "
         "best candidates for the chat model to read and cite in its answer today")
_WORDS = _TEXT.split(" ")


@dataclass(frozen=True)
class Level:
    batch: int
    requests: int
    texts_s: float
    tokens_s: float
    p50_ms: float

    def as_dict(self) -> dict[str, object]:
        return {"batch": self.batch, "requests": self.requests, "texts_s": round(self.texts_s, 1),
                "tokens_s": round(self.tokens_s, 1), "p50_ms": round(self.p50_ms, 2)}


@dataclass(frozen=True)
class EmbeddingBench:
    tier: str
    model: str
    url: str
    levels: list[Level]
    peak_rss_gb: float = 0.0  # 0.0 when the tier's process is unknown
    saved_to: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"tier": self.tier, "model": self.model, "kind": EMBEDDING, "url": self.url,
                "levels": [lv.as_dict() for lv in self.levels], "peak_rss_gb": round(self.peak_rss_gb, 4),
                "saved_to": self.saved_to}


def embedding_tier(p: Paths, name: str) -> Stack | None:
    """The stack when ``name`` is one of its embedding tiers, else None."""
    from mlx_stack.services import stack_store

    if not stack_store.exists(p):
        return None
    stack = stack_store.load(p)
    return stack if any(t.name == name and t.kind == EMBEDDING for t in stack.tiers) else None


def _texts(n: int, salt: str) -> list[str]:
    return [" ".join(_WORDS[(i + j) % len(_WORDS)] for j in range(60)) + f" {salt}-{i}" for i in range(n)]


def run(p: Paths, stack: Stack, name: str, *, rounds: int = 5, save: bool = False,
        on_progress: Callable[[str], None] | None = None) -> EmbeddingBench:
    from mlx_stack.services import running
    from mlx_stack.services.bench import MemorySampler

    say = on_progress or (lambda _m: None)
    tier = stack.tier(name)
    url = running.base_url(stack, name)
    record = running.running_record(p, name)
    with MemorySampler(record.pid if record is not None else None) as memory:
        levels = _measure(p, url, name, {"model": tier.served_model}, rounds, say)
    result = EmbeddingBench(name, tier.model, url, levels, memory.peak / GB)
    return replace(result, saved_to=_save(p, result, tier.path)) if save else result


def _save(p: Paths, result: EmbeddingBench, folder: str) -> str:
    from mlx_stack.services import bench_store, bench_target, hardware

    profile = hardware.detect()
    quant = bench_target.identify(p, Path(folder))[1] if Path(folder).is_dir() else None
    data = bench_result.embedding_result(
        model=result.model, quant=quant, target=result.tier, profile=profile.profile_key,
        hardware=profile.label, measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        levels=[cast("JSONObject", lv.as_dict()) for lv in result.levels], peak_rss_gb=result.peak_rss_gb)
    return str(bench_store.save_embedding(p, data))


def _measure(p: Paths, url: str, name: str, body: dict[str, object], rounds: int,
             say: Callable[[str], None]) -> list[Level]:
    levels: list[Level] = []
    try:
        for batch in BATCHES:
            say(f"batch {batch}: 1 warm-up + {rounds} requests")
            probes.post_json(url, "/v1/embeddings", {**body, "input": _texts(batch, "warm")})
            times: list[float] = []
            tokens = 0
            for r in range(rounds):
                status, took, answer = probes.post_json(url, "/v1/embeddings",
                                                        {**body, "input": _texts(batch, f"r{r}")})
                if status != 200 or not isinstance(answer, dict):
                    raise ServiceError(f"tier {name!r} answered HTTP {status}",
                                       hint=f"see {p.log_file(name)}")
                usage = answer.get("usage")
                tokens += int(usage.get("prompt_tokens") or 0) if isinstance(usage, dict) else 0
                times.append(took)
            total = sum(times)
            levels.append(Level(batch, rounds, batch * rounds / total, tokens / total,
                                statistics.median(times) * 1000))
    except OSError as exc:
        raise ServiceError(f"tier {name!r} is not answering ({exc})",
                           hint=f"start it with `mlx-stack up --tier {name}`") from None
    return levels
