"""Which embedding model (and reranker) the recommender adds, within the budget (issue 25).

Pure. When the best embedding model costs at most an eighth of the budget, its room is kept
first (:func:`reserve`) and the chat tiers share the rest; what the chat tiers leave then
takes the best embedding model that fits (:func:`pick`), and a reranker when memory still
allows. A retrieval tier runs in its own vllm-mlx process, so its need is the estimator's
formula without KV: weights x (1 + activation share) + the fixed activation term + one
server process. "Best" is the published retrieval score when the entry has one, else the
larger model (the same order as the catalog's own quality estimates). A saved `bench TIER
--save` of an embedding tier on this machine replaces the estimated need by the measured one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from mlx_stack.core.catalog import CatalogEntry
from mlx_stack.core.estimator import ACTIVATION_FIXED, ACTIVATION_SHARE, SERVER_PROCESS, weights_bytes
from mlx_stack.core.units import gb

QUANT_ORDER = ("int4", "int6", "int8", "bf16")
TIER_NAMES = {"embedding": "embed", "rerank": "rerank"}


@dataclass(frozen=True)
class RetrievalPick:
    name: str  # the tier: embed | rerank
    entry: CatalogEntry
    quant: str
    memory_bytes: int
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"tier": self.name, "model": self.entry.id, "kind": self.entry.kind, "quant": self.quant,
                "repo": self.entry.repos[self.quant].repo, "memory_bytes": self.memory_bytes,
                "reason": self.reason}


def need_bytes(entry: CatalogEntry, quant: str) -> int:
    """A retrieval tier's need: weights, activations, its own server process; no KV."""
    return int(weights_bytes(entry, quant) * (1 + ACTIVATION_SHARE) + ACTIVATION_FIXED + SERVER_PROCESS)


def measured(saved: Mapping[str, object] | None, entry: CatalogEntry,
             quant: str) -> tuple[int, float] | None:
    """(memory bytes, texts/s) of a saved bench of ``entry`` at ``quant`` (`bench TIER --save`), if any."""
    raw = (saved or {}).get(entry.id)
    get: Callable[[str], object] = (cast(Mapping[str, object], raw).get if isinstance(raw, Mapping)
                                 else lambda k: getattr(raw, k, None))
    memory, speed = get("memory_bytes"), get("texts_s")
    if raw is None or get("kind") != entry.kind or get("quant") not in (None, quant):
        return None
    if not isinstance(memory, int | float) or memory <= 0 or not isinstance(speed, int | float) or speed <= 0:
        return None
    return int(memory), float(speed)


def planned_bytes(entry: CatalogEntry, quant: str, saved: Mapping[str, object] | None) -> int:
    """The measured memory when a saved bench has it, else the estimate (:func:`need_bytes`)."""
    found = measured(saved, entry, quant)
    return found[0] if found is not None else need_bytes(entry, quant)


def quant_for(entry: CatalogEntry, quant: str) -> str:
    """``quant`` when the entry ships it, else its first of int4 / int6 / int8 / bf16."""
    return quant if quant in entry.repos else next(q for q in QUANT_ORDER if q in entry.repos)


def _rank(entry: CatalogEntry) -> tuple[float, float]:
    return (entry.quality.score if entry.quality is not None else -1.0, entry.params_b)


RESERVE_SHARE = 8  # an embedding model is planned before the chat tiers when it costs <= 1/8


def reserve(catalog: Iterable[CatalogEntry], budget_bytes: int, quant: str = "int4",
            saved: Mapping[str, object] | None = None) -> int:
    """The room kept for the best embedding model costing at most an eighth of the budget
    (0: none does; the chat tiers then take it all and :func:`pick` adds one only if room is left).
    ``saved``: `bench --save` results by model id (a measured memory replaces the estimate)."""
    needs = [(_rank(e), planned_bytes(e, quant_for(e, quant), saved)) for e in catalog
             if e.kind == "embedding" and not e.gated]
    fitting = [(rank, n) for rank, n in needs if n * RESERVE_SHARE <= budget_bytes]
    return max(fitting)[1] if fitting else 0


def pick(catalog: Iterable[CatalogEntry], left_bytes: int, quant: str = "int4",
         saved: Mapping[str, object] | None = None) -> tuple[list[RetrievalPick], list[str]]:
    """The retrieval tiers that fit in ``left_bytes`` (embedding first, then a reranker),
    and a note for each kind left out; ``saved`` as for :func:`reserve`."""
    entries = list(catalog)
    picks: list[RetrievalPick] = []
    notes: list[str] = []
    for kind in ("embedding", "rerank"):
        options = sorted((e for e in entries if e.kind == kind and not e.gated), key=_rank, reverse=True)
        if not options:
            continue
        fitting = [(e, q, n) for e in options
                   if (n := planned_bytes(e, q := quant_for(e, quant), saved)) <= left_bytes]
        if not fitting:
            smallest = min(options, key=lambda e: planned_bytes(e, quant_for(e, quant), saved))
            least = planned_bytes(smallest, quant_for(smallest, quant), saved)
            notes.append(f"no {kind} model added: the chat tiers leave {gb(max(0, left_bytes))} of the "
                         f"budget and the smallest ({smallest.id}) needs {gb(least)}")
            continue
        entry, q, need = fitting[0]
        score = (f"{entry.quality.benchmark} {entry.quality.score:g}" if entry.quality is not None
                 else "no published retrieval score recorded")
        found = measured(saved, entry, q)
        bench = ("" if found is None else f"; measured here: {gb(found[0])}, "
                 f"{found[1]:g} texts/s at batch 64 (saved benchmark)")
        picks.append(RetrievalPick(TIER_NAMES[kind], entry, q, need,
                                   f"best {kind} model that fits the {gb(left_bytes)} the chat tiers leave "
                                   f"({score}); its own process{bench}"))
        left_bytes -= need
    return picks, notes
