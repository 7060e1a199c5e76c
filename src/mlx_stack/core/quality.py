"""How good a catalog model is, with the source of the figure (pure).

Per model, the catalog stores a published aggregate score (``quality:`` in its YAML: the
score, the benchmark, the source URL and its date). Where a model has none, its score is
estimated and says so:

- from its size: a least-squares line of score over log(effective params) fitted on the
  catalog's published scores (a mixture of experts counts sqrt(total x active) params);
- never below an older model of the same publisher at the same or a smaller size with a
  published score (a newer generation must not lose to an older one for lack of data).

Quantization costs quality, more for small models: the int4/int6/int8 loss is a line over
log(total params) through the MMLU-Pro losses mlx-lm measured on its own quantizations
(Qwen3-4B-Instruct-2507: bf16 64.05, q8 63.85, q6 63.53, q4 60.72; Qwen3-30B-A3B-Instruct-
2507: bf16 72.62, q8 72.46, q6 72.41, q4 70.71; ml-explore/mlx-lm mlx_lm/BENCHMARKS.md,
2025-10-15). The score for ranking is the quantized score mapped to [0, 1] between
SCORE_FLOOR and SCORE_CEILING.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from mlx_stack.core.catalog import CatalogEntry

SCORE_FLOOR, SCORE_CEILING = 30.0, 70.0  # scores mapped to 0 and 1 for ranking
SAME_SIZE = 1.1  # "the same size": within 10% of the effective parameters
# (params_b, fractional loss) at the two sizes mlx-lm measured, per quantization.
_QUANT_LOSS = {
    "int4": ((4.02, (64.05 - 60.72) / 64.05), (30.5, (72.62 - 70.71) / 72.62)),
    "int6": ((4.02, (64.05 - 63.53) / 64.05), (30.5, (72.62 - 72.41) / 72.62)),
    "int8": ((4.02, (64.05 - 63.85) / 64.05), (30.5, (72.62 - 72.46) / 72.62)),
}
QUANT_LOSS_SOURCE = "https://github.com/ml-explore/mlx-lm/blob/main/mlx_lm/BENCHMARKS.md (2025-10-15)"


@dataclass(frozen=True)
class Quality:
    """One model's quality at one quantization and where it comes from."""

    value: float  # in [0, 1], for ranking
    score: float  # the aggregate score (0-100) before quantization: published or estimated
    quantized_score: float
    published: bool
    explanation: str  # names the benchmark, URL and date, or how the estimate was made

    @property
    def basis(self) -> str:
        return "published" if self.published else "estimated"

    def as_dict(self) -> dict[str, object]:
        return {"score": round(self.score, 1), "quantized_score": round(self.quantized_score, 1),
                "basis": self.basis, "value": round(self.value, 3), "source": self.explanation}


def effective_params(entry: CatalogEntry) -> float:
    return math.sqrt(entry.params_b * entry.active_params_b) if entry.is_moe else entry.params_b


def quant_loss(entry: CatalogEntry, quant: str) -> float:
    """Fraction of the score lost at ``quant`` (0 for bf16), from mlx-lm's measurements."""
    points = _QUANT_LOSS.get(quant)
    if points is None:
        return 0.0
    (p1, l1), (p2, l2) = points
    slope = (l2 - l1) / (math.log(p2) - math.log(p1))
    loss = l1 + slope * (math.log(max(entry.params_b, 0.1)) - math.log(p1))
    return max(0.0, min(2 * l1, loss))


def size_line(entries: Iterable[CatalogEntry]) -> tuple[float, float, int]:
    """(intercept, slope, n): published score over ln(effective params), least squares."""
    pts = [(math.log(effective_params(e)), e.quality.score) for e in entries if e.quality is not None]
    n = len(pts)
    if n < 2:
        return 50.0, 0.0, n
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else 0.0
    return my - slope * mx, slope, n


def _older_peer(entry: CatalogEntry, catalog: list[CatalogEntry]) -> CatalogEntry | None:
    """The best-scored older model of the same publisher at the same or a smaller size."""
    if entry.released is None:
        return None
    size = effective_params(entry) * SAME_SIZE
    peers = [e for e in catalog if e.quality is not None and e.publisher == entry.publisher
             and e.released is not None and e.released < entry.released and effective_params(e) <= size]
    return max(peers, key=lambda e: (e.quality.score, e.id), default=None)  # type: ignore[union-attr]


def assess(entry: CatalogEntry, quant: str, catalog: Iterable[CatalogEntry]) -> Quality:
    """The entry's quality at ``quant``: its published score, else the estimate."""
    if entry.quality is not None:
        q = entry.quality
        score, published = q.score, True
        explanation = f"{q.benchmark}: {q.score:g} ({q.source}, {q.date})"
    else:
        # Only chat models' scores share a scale (retrieval entries publish MTEB figures).
        entries = [e for e in catalog if e.kind == entry.kind]
        a, b, n = size_line(entries)
        score, published = a + b * math.log(effective_params(entry)), False
        explanation = (f"no published score: estimated {score:.1f} from its size "
                       f"({effective_params(entry):.3g}B effective params; line fitted on {n} published "
                       "catalog scores)")
        peer = _older_peer(entry, entries)
        if peer is not None and peer.quality is not None and peer.quality.score > score:
            score = peer.quality.score
            explanation += (f", raised to {score:g}: the score of {peer.id} ({peer.released}), an older "
                            f"{peer.publisher} model of the same or a smaller size")
    loss = quant_loss(entry, quant)
    quantized = score * (1 - loss)
    if loss:
        explanation += f"; {quant} costs {100 * loss:.1f}% (mlx-lm MMLU-Pro by size, {QUANT_LOSS_SOURCE})"
    value = max(0.0, min(1.0, (quantized - SCORE_FLOOR) / (SCORE_CEILING - SCORE_FLOOR)))
    return Quality(value, score, quantized, published, explanation)
