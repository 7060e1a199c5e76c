"""Recommendation sanity over Macs from an 8 GB M1 to a 512 GB M3 Ultra (binned variants too)."""

from __future__ import annotations

import pytest

from mlx_stack.core.scoring import recommend
from mlx_stack.services.catalog_store import load_catalog
from mlx_stack.services.hardware import Plan, plan_profile

MACS = [
    Plan("M1", 7, 8), Plan("M1", 8, 16), Plan("M2", 8, 8), Plan("M3", 10, 24), Plan("M4", 10, 16),
    Plan("M3 Pro", 14, 18), Plan("M4 Pro", 16, 24), Plan("M4 Pro", 20, 48), Plan("M3 Max", 30, 36),
    Plan("M4 Max", 32, 36), Plan("M1 Max", 32, 64), Plan("M4 Max", 40, 64), Plan("M5 Max", 40, 128),
    Plan("M2 Ultra", 60, 128), Plan("M2 Ultra", 76, 192), Plan("M3 Ultra", 60, 256),
    Plan("M3 Ultra", 80, 512),
]


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


@pytest.fixture(scope="module")
def recs(cat):
    return {f"{p.chip} {p.gpu_cores}c {p.memory_gb}GB": (p, recommend(plan_profile(p), cat)) for p in MACS}


def test_at_least_twelve_macs_from_8gb_m1_to_512gb_m3_ultra():
    assert len(MACS) >= 12 and MACS[0] == Plan("M1", 7, 8) and MACS[-1] == Plan("M3 Ultra", 80, 512)
    assert any(p.chip == "M1" and p.gpu_cores == 7 for p in MACS)  # a binned variant


def test_all_tiers_fit_together_in_the_budget(recs):
    for name, (_, rec) in recs.items():
        assert rec.tiers, name
        assert rec.total_memory_bytes <= rec.budget_bytes, name


def test_standard_is_never_weaker_than_fast(recs):
    for name, (_, rec) in recs.items():
        tiers = {t.name: t for t in rec.tiers}
        if "fast" in tiers:
            assert tiers["standard"].quality.value >= tiers["fast"].quality.value, name
            assert tiers["fast"].decode_tok_s >= 1.5 * tiers["standard"].decode_tok_s, name


def test_fast_tier_may_be_moe_on_64gb_and_up(recs):
    fast_moe = [name for name, (p, rec) in recs.items() if p.memory_gb >= 64
                for t in rec.tiers if t.name == "fast" and t.entry.is_moe]
    assert fast_moe  # a mixture of experts wins the fast tier on big Macs
    for name, (p, rec) in recs.items():
        if p.memory_gb < 64:
            continue
        assert any(t.name == "fast" for t in rec.tiers), name


def test_512gb_standard_is_70b_class_or_a_large_moe(recs):
    _, rec = recs["M3 Ultra 80c 512GB"]
    std = rec.tiers[0].entry
    assert std.params_b >= 70 or (std.is_moe and std.params_b >= 100), std.id


def test_mid_size_macs_get_a_current_generation(recs):
    for name in ("M4 Pro 20c 48GB", "M3 Max 30c 36GB"):
        _, rec = recs[name]
        assert rec.tiers[0].entry.id not in {"qwen2.5-7b-instruct", "qwen2.5-3b-instruct"}, name
        assert rec.tiers[0].quality.published, name


def test_explanation_names_the_source_of_each_number(recs):
    for name, (_, rec) in recs.items():
        for t in rec.tiers:
            d = t.as_dict()
            assert set(d["sources"]) == {"decode", "prefill", "memory", "quality"}
            assert "estimat" in d["sources"]["decode"] or "measured" in d["sources"]["decode"]
            q = d["sources"]["quality"]
            assert ("https://" in q) if t.quality.published else ("estimated" in q), (name, t.entry.id)
            assert d["decode_context"] < d["decode_full_context"] == t.context
            assert d["decode_full_tok_s"] <= d["decode_tok_s"]
