"""The `models` use cases: the catalog with estimates for this machine, a recommendation,
the hub's repos; and the `bench --save` results the recommender prefers to its estimates
(also used by `setup`).

Each returns a result object with ``as_dict()`` (what ``--json`` prints); the CLI only
renders them (``cli/models_cmd.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlx_stack.errors import MlxStackError
from mlx_stack.paths import Paths

if TYPE_CHECKING:
    from mlx_stack.core.catalog import Catalog, CatalogEntry
    from mlx_stack.core.hardware import HardwareProfile
    from mlx_stack.core.memory_plan import ServingProfile
    from mlx_stack.core.scoring import Candidate, Recommendation
    from mlx_stack.services.hub_available import RepoStatus


def saved_results(p: Paths, profile: HardwareProfile | str,
                  catalog: Catalog | None = None) -> dict[str, dict[str, object]]:
    """`bench --save` results for this hardware profile (they override estimates), by
    catalog id; a result saved under a repo id counts for the catalog model shipping it.
    Optional help: a catalog or results that cannot be read give none (the catalog's own
    error shows where it is needed)."""
    try:
        from mlx_stack.core.bench_result import SavedEmbedding
        from mlx_stack.services.bench_store import load_saved
        from mlx_stack.services.catalog_store import load_catalog

        catalog = catalog if catalog is not None else load_catalog()
        out: dict[str, dict[str, object]] = {}
        for key, m in load_saved(p, profile).items():
            hit = catalog.find_repo(key)
            model_id, quant = (hit[0].id, hit[1]) if hit else (key, getattr(m, "quant", None))
            if isinstance(m, SavedEmbedding):  # read by core.retrieval_plan, not by chat scoring
                out[model_id] = {"kind": m.kind, "texts_s": m.texts_s, "tokens_s": m.tokens_s,
                                 "memory_bytes": m.memory_bytes, "quant": quant}
                continue
            out[model_id] = {"decode_tok_s": m.decode_tok_s, "memory_bytes": m.memory_bytes, "quant": quant}
        return out
    except (ImportError, MlxStackError):
        return {}


def pick_quant(p: Paths, quant: str | None) -> str:
    """``--quant`` checked (every quantization the catalog has), else the configured default-quant."""
    from mlx_stack.core.config_schema import QUANTS
    from mlx_stack.errors import UsageError
    from mlx_stack.services import config

    if quant is None:
        return config.load(p).get("default-quant")
    value = quant.strip().lower()
    if value not in QUANTS:
        from mlx_stack.core.config_schema import shown

        raise UsageError(f"invalid --quant {shown(quant)}: expected one of {', '.join(QUANTS)}",
                         hint="e.g. --quant int6")
    return value


def check_prompt_tokens(prompt_tokens: int) -> int:
    """``--prompt-tokens``: 1 to 10 million (UsageError otherwise)."""
    from mlx_stack.errors import UsageError

    if not 1 <= prompt_tokens <= 10_000_000:
        raise UsageError(f"invalid --prompt-tokens {prompt_tokens}: expected 1-10000000",
                         hint="e.g. --prompt-tokens 32768 (a long agent turn)")
    return prompt_tokens


# --- `models --catalog` --------------------------------------------------------------------


@dataclass
class CatalogReport:
    hardware: HardwareProfile
    budget_bytes: int
    budget_reason: str
    # one row per catalog model, estimates for this machine; Any: the CLI table reads its
    # two dozen fields by key (a TypedDict per row would be the typed form)
    models: list[dict[str, Any]]
    # embedding / rerank entries (issue 25), priced as their own process (core.retrieval_plan)
    retrieval: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])

    def as_dict(self) -> dict[str, object]:
        return {"hardware": self.hardware.as_dict(), "budget_bytes": self.budget_bytes, "models": self.models,
                "retrieval": self.retrieval}


CATALOG_KINDS = ("all", "chat", "embedding", "rerank")


def retrieval_row(e: CatalogEntry, quant: str, budget: int, saved: Mapping[str, object]) -> dict[str, Any]:
    """One embedding / rerank entry for `models --catalog`: what it serves, its size and the
    memory planned for its own process (measured when `bench TIER --save` saved it), its score."""
    from mlx_stack.core.retrieval_plan import measured, planned_bytes, quant_for

    q = quant_for(e, quant)
    info = e.retrieval
    memory, found = planned_bytes(e, q, saved), measured(saved, e, q)
    return {
        "id": e.id, "name": e.name, "kind": e.kind, "family": e.family, "params_b": e.params_b,
        "dimensions": info.dimensions if info else None, "matryoshka": info.matryoshka if info else False,
        "max_input_tokens": info.max_input_tokens if info else None, "gated": e.gated, "license": e.license,
        "quant": q, "repo": e.repos[q].repo, "disk_gb": e.repos[q].disk_gb,
        "repos": {k: {"repo": r.repo, "disk_gb": r.disk_gb} for k, r in e.repos.items()},
        "memory_bytes": memory, "fits": memory <= budget,
        "memory_source": "measured (saved benchmark)" if found else "estimated",
        "texts_s": found[1] if found else None,
        "score": None if e.quality is None else {"score": e.quality.score, "benchmark": e.quality.benchmark,
                                                 "source": e.quality.source, "date": e.quality.date},
        "released": e.released, "repo_source": e.repo_source, "notes": e.notes,
    }


def catalog_report(p: Paths, hw: HardwareProfile, *, family: str | None = None, tag: str | None = None,
                   tool_calling: bool = False, quant: str | None = None,
                   prompt_tokens: int | None = None, kind: str = "all") -> CatalogReport:
    """The catalog (filtered) with speed (decode; prefill and time to first token of a
    ``prompt_tokens`` prompt), memory, quality and fit on ``hw``; ``kind``: chat, embedding,
    rerank or all (retrieval entries are listed apart, in ``retrieval``)."""
    from mlx_stack.core.estimator import DEFAULT_PROMPT_TOKENS, SHORT_CONTEXT
    from mlx_stack.core.scoring import TIER_CONTEXT, budget_for, candidates, number_sources, speed_fields
    from mlx_stack.services import config
    from mlx_stack.services.catalog_store import load_catalog

    full_catalog = load_catalog()
    entries = full_catalog.filter(family=family, tag=tag, tool_calling=tool_calling)
    q = pick_quant(p, quant)
    prompt = check_prompt_tokens(DEFAULT_PROMPT_TOKENS if prompt_tokens is None else prompt_tokens)
    budget, budget_reason = budget_for(hw, config.load(p).get("memory-budget-pct"))
    by_id = {c.entry.id: c for c in candidates(hw, entries, quant=q, budget_bytes=budget,
                                               saved=saved_results(p, hw, full_catalog),
                                               reference=full_catalog, prompt_tokens=prompt)}
    rows = []
    for e in entries:
        c = by_id.get(e.id)
        if c is None:  # an embedding / rerank entry: not priced as a chat model (issue 25)
            continue
        rows.append({
            "id": e.id, "name": e.name, "family": e.family, "params_b": e.params_b,
            "active_params_b": e.active_params_b, "context_length": e.context_length, "gated": e.gated,
            "tags": list(e.tags), "capabilities": vars(e.capabilities).copy(),
            "repos": {k: {"repo": r.repo, "disk_gb": r.disk_gb} for k, r in e.repos.items()},
            "quant": c.quant, "repo": c.repo, "context": TIER_CONTEXT["standard"],
            "decode_tok_s": None if c.decode_tok_s is None else round(c.decode_tok_s, 1),
            "decode_context": SHORT_CONTEXT,
            "decode_full_tok_s": None if c.decode_full_tok_s is None else round(c.decode_full_tok_s, 1),
            "decode_full_context": TIER_CONTEXT["standard"], **speed_fields(c),
            "memory_bytes": c.memory_bytes, "source": c.source, "fits": c.memory_bytes <= budget,
            "released": e.released,
            "quality": None if c.quality_info is None else c.quality_info.as_dict(),
            "shape": None if e.shape is None else vars(e.shape).copy(), "repo_source": e.repo_source,
            "sources": number_sources(c.source, c.quality_info, speed_known=c.decode_tok_s is not None,
                                      prefill_known=c.ttft_s is not None),
        })
    saved = saved_results(p, hw, full_catalog)
    retrieval = [retrieval_row(e, q, budget, saved) for e in entries
                 if e.kind != "chat" and kind in ("all", e.kind)]
    return CatalogReport(hw, budget, budget_reason, rows if kind in ("all", "chat") else [], retrieval)


# --- `models --recommend` ------------------------------------------------------------------


@dataclass
class RecommendReport:
    hardware: HardwareProfile
    recommendation: Recommendation
    profiles: Mapping[str, ServingProfile]  # each tier's serving plan
    show_all: bool = False  # as_dict lists every scored candidate

    def as_dict(self) -> dict[str, object]:
        rec = self.recommendation
        data = {"hardware": self.hardware.as_dict(), **rec.as_dict()}
        for t in data["tiers"]:
            t["serving"] = profile_dict(self.profiles[t["tier"]])
        if self.show_all:
            data["candidates"] = [candidate_dict(c, rec.budget_bytes) for c in rec.candidates]
        return data


def profile_dict(p: ServingProfile) -> dict[str, object]:
    """A serving profile for --json output (MB figures, the rendered caps)."""
    from mlx_stack.core.memory_plan import dump_profile

    return {**dump_profile(p), "planned_mb": p.planned_mb, "prefix_cache": p.prefix_cache,
            "cache_tokens": p.cache_tokens}


def candidate_dict(c: Candidate, budget: int) -> dict[str, object]:
    from mlx_stack.core.scoring import speed_fields

    return {"model": c.entry.id, "quant": c.quant, "repo": c.repo, "score": c.score, **speed_fields(c),
            "quality": round(c.quality, 3),
            "quality_source": None if c.quality_info is None else c.quality_info.as_dict(),
            "decode_full_tok_s": None if c.decode_full_tok_s is None else round(c.decode_full_tok_s, 1),
            "decode_tok_s": None if c.decode_tok_s is None else round(c.decode_tok_s, 1),
            "memory_bytes": c.memory_bytes, "source": c.source, "fits": c.memory_bytes <= budget}


def recommend_report(p: Paths, hw: HardwareProfile, *, budget: str | None = None, intent: str = "balanced",
                     quant: str | None = None, show_all: bool = False,
                     prompt_tokens: int | None = None) -> RecommendReport:
    """A model per tier on ``hw`` (within ``--budget``, else the configured share), with
    each tier's serving plan and time to first token for a ``prompt_tokens`` prompt.
    UsageError for an unknown intent, a bad budget or prompt length."""
    from mlx_stack.core.estimator import DEFAULT_PROMPT_TOKENS
    from mlx_stack.core.memory_plan import for_recommendation
    from mlx_stack.core.scoring import INTENTS, recommend
    from mlx_stack.core.units import parse_budget
    from mlx_stack.errors import UsageError
    from mlx_stack.services import config
    from mlx_stack.services.catalog_store import load_catalog

    if intent not in INTENTS:
        raise UsageError(f"unknown intent {intent!r}", hint="intents: " + ", ".join(INTENTS))
    budget_bytes = parse_budget(budget, hw.memory_bytes) if budget is not None else None
    prompt = check_prompt_tokens(DEFAULT_PROMPT_TOKENS if prompt_tokens is None else prompt_tokens)
    q = pick_quant(p, quant)
    catalog = load_catalog()
    rec = recommend(hw, catalog, intent=intent, budget_bytes=budget_bytes, quant=q,
                    memory_budget_pct=config.load(p).get("memory-budget-pct"),
                    saved=saved_results(p, hw, catalog), prompt_tokens=prompt)
    profiles = for_recommendation(rec, int(hw.gpu_limit_bytes or hw.memory_bytes))
    return RecommendReport(hw, rec, profiles, show_all)


# --- `models --available` ------------------------------------------------------------------


@dataclass
class AvailableReport:
    repos: list[RepoStatus] = field(default_factory=list)

    def as_dict(self) -> list[dict[str, object]]:
        return [s.as_dict() for s in self.repos]


def available_report(*, family: str | None = None, tag: str | None = None,
                     tool_calling: bool = False) -> AvailableReport:
    """Which of the (filtered) catalog's repos the Hugging Face Hub has."""
    from mlx_stack.services.catalog_store import load_catalog
    from mlx_stack.services.hub_available import check_available

    entries = load_catalog().filter(family=family, tag=tag, tool_calling=tool_calling)
    return AvailableReport(check_available(entries))
