from __future__ import annotations

import pytest

from mlx_stack.core.hardware import GIB, cpu_profile
from mlx_stack.core.scoring import INTENTS, budget_for, recommend
from mlx_stack.errors import UsageError
from mlx_stack.services.catalog_store import load_catalog
from mlx_stack.services.hardware import Plan, plan_profile

PLANS = [Plan("M1", 8, 16), Plan("M3", 10, 8), Plan("M4 Pro", 20, 48), Plan("M4 Max", 40, 128),
         Plan("M2 Ultra", 76, 192), Plan("M5 Max", 40, 128), Plan("M3 Max", 30, 36)]


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_16gb_m1_gets_small_models_that_fit(cat):
    rec = recommend(plan_profile(Plan("M1", 8, 16)), cat)
    assert rec.tiers and rec.tiers[0].name == "standard"
    assert all(t.entry.params_b <= 4.5 for t in rec.tiers)
    assert rec.total_memory_bytes <= rec.budget_bytes <= 0.4 * 16 * GIB + 1
    assert {d.name for d in rec.dropped} | {t.name for t in rec.tiers} == {"standard", "fast", "longctx"}


def test_128gb_m4_max_gets_a_large_standard_tier(cat):
    rec = recommend(plan_profile(Plan("M4 Max", 40, 128)), cat)
    standard = rec.tiers[0]
    assert standard.name == "standard" and standard.entry.params_b >= 20
    assert [t.name for t in rec.tiers] == ["standard", "fast", "longctx"]
    fast = rec.tiers[1]
    assert fast.decode_tok_s >= 1.5 * standard.decode_tok_s
    assert rec.tiers[2].entry.context_length >= 65536
    assert all(t.reason and t.estimated for t in rec.tiers)


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: f"{p.chip}-{p.memory_gb}")
@pytest.mark.parametrize("intent", list(INTENTS))
def test_sum_of_tiers_never_exceeds_the_budget(cat, plan, intent):
    for pct in (10, 25, 40, 80, 100):
        rec = recommend(plan_profile(plan), cat, intent=intent, memory_budget_pct=pct)
        assert rec.total_memory_bytes <= rec.budget_bytes
        assert len({t.entry.id for t in rec.tiers}) == len(rec.tiers)
        assert len(rec.tiers) + len(rec.dropped) == 3
        if intent == "agent-fleet":
            assert all(t.entry.capabilities.tool_calling for t in rec.tiers if t.name == "fast")


def test_budget_is_capped_at_the_gpu_limit(cat):
    hw = plan_profile(Plan("M4 Max", 40, 128))
    budget, why = budget_for(hw, 100)
    assert budget == hw.gpu_limit_bytes and "capped" in why
    budget, why = budget_for(hw, 40, explicit_bytes=30 * 10**9)
    assert budget == 30 * 10**9 and "--budget" in why
    with pytest.raises(UsageError):
        budget_for(hw, 40, explicit_bytes=0)


def test_nothing_fits_drops_every_tier_with_a_reason(cat):
    rec = recommend(plan_profile(Plan("M1", 8, 8)), cat, budget_bytes=10**9)
    assert rec.tiers == [] and len(rec.dropped) == 3
    assert "smallest" in rec.dropped[0].reason


def test_saved_benchmarks_override_estimates(cat):
    hw = plan_profile(Plan("M4 Max", 40, 128))
    base = recommend(hw, cat)
    standard = base.tiers[0]
    saved = {standard.entry.id: {"decode_tok_s": 41.0, "memory_bytes": 20 * 10**9}}
    rec = recommend(hw, cat, saved=saved)
    tier = next(t for t in rec.tiers if t.entry.id == standard.entry.id)
    assert tier.decode_tok_s == 41.0 and tier.memory_bytes == 20 * 10**9
    assert tier.source == "measured (saved benchmark)" and not tier.estimated
    bad = recommend(hw, cat, saved={standard.entry.id: {"decode_tok_s": 41.0, "memory_bytes": 0},
                                    "qwen3-8b": {"decode_tok_s": 50.0}})
    assert sum("ignored" in n for n in bad.notes) == 2
    assert bad.tiers[0].source == "estimated"


def test_catalog_measurements_are_used_on_the_same_chip(cat):
    rec = recommend(plan_profile(Plan("M5 Max", 40, 128)), cat)
    sources = {t.source for t in rec.tiers}
    assert any(s.startswith("measured (catalog") for s in sources) or sources == {"estimated"}
    cands = {c.entry.id: c for c in rec.candidates}
    assert cands["qwen3-8b"].decode_tok_s == 104.1 and cands["qwen3-8b"].source.startswith("measured")


def test_cpu_profile_still_recommends(cat):
    rec = recommend(cpu_profile("x86", 32 * GIB, 8), cat)
    assert rec.tiers and all(t.decode_tok_s is None for t in rec.tiers)
    assert any("bandwidth unknown" in n for n in rec.notes)


def test_unknown_intent(cat):
    with pytest.raises(UsageError):
        recommend(plan_profile(Plan("M1", 8, 16)), cat, intent="speedy")


def test_as_dict_shape(cat):
    d = recommend(plan_profile(Plan("M4 Pro", 20, 48)), cat).as_dict()
    assert {"intent", "weights", "budget_bytes", "tiers", "dropped", "total_memory_bytes"} <= set(d)
    assert {"tier", "model", "quant", "repo", "decode_tok_s", "memory_bytes", "reason", "estimated"} <= set(
        d["tiers"][0])
