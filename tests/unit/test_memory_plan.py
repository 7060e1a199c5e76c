"""The serving-profile planner (core.memory_plan): caps within the budget on many Macs,
flags rendered for vllm-mlx 0.6, stack.yaml round trip and validation, the guard."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mlx_stack.core.memory_plan import (
    AGENT_PREFIX_TOKENS,
    AGENT_SESSIONS,
    MB,
    METAL_TOTAL_MAX,
    GuardInput,
    ServingProfile,
    TierNeed,
    check_budget,
    dump_profile,
    for_recommendation,
    guard,
    kv_shape,
    parse_profile,
    plan,
    server_flags,
)
from mlx_stack.core.scoring import recommend
from mlx_stack.core.stack import Tier, dump_stack, parse_stack
from mlx_stack.errors import ConflictError, ExitCode, StateError
from mlx_stack.services.catalog_store import load_catalog
from mlx_stack.services.hardware import Plan, plan_profile

GB = 1024**3
MACS = [
    ("M1", 8), ("M1", 16), ("M2", 8), ("M2", 24), ("M2 Pro", 16), ("M2 Pro", 32), ("M3", 16),
    ("M3 Max", 36), ("M3 Max", 128), ("M4", 16), ("M4", 32), ("M4 Pro", 24), ("M4 Pro", 48),
    ("M4 Max", 64), ("M4 Max", 128), ("M2 Ultra", 192), ("M3 Ultra", 512),
]


@pytest.mark.parametrize("intent", ["balanced", "agent-fleet", "agent"])
@pytest.mark.parametrize("pct", [25, 40, 75])
@pytest.mark.parametrize(("chip", "memory_gb"), MACS)
def test_caps_of_all_tiers_fit_the_budget_on_every_mac(chip: str, memory_gb: int, pct: int,
                                                       intent: str) -> None:
    hw = plan_profile(Plan(chip, memory_gb=memory_gb))
    rec = recommend(hw, load_catalog(), intent=intent, memory_budget_pct=pct)
    ws = int(hw.gpu_limit_bytes or hw.memory_bytes)
    profiles = for_recommendation(rec, ws)
    assert set(profiles) == {t.name for t in rec.tiers}
    total_mb = sum(p.planned_mb for p in profiles.values())
    assert total_mb <= rec.budget_bytes // MB  # need + cache caps of all tiers within the budget
    for t in rec.tiers:
        p = profiles[t.name]
        # the recommender's figure and the runtime plan are the same number
        assert abs(p.need_mb * MB - t.memory_bytes) < MB
        assert p.context == t.context and p.max_num_seqs > 0
        assert p.gpu_memory_utilization * ws >= p.planned_mb * MB  # the Metal limit holds the plan
        if p.kv_cache_bits:  # quantized only where fp16 would not hold one planned context
            assert p.kv_bytes_per_token * p.context > p.cache_memory_mb * MB
            assert p.cache_tokens >= p.cache_memory_mb * MB // p.kv_bytes_per_token * (16 // p.kv_cache_bits)
            # 8 bits: one full context (the agent tier: its sessions' prefixes)
            wanted = min(p.context, AGENT_PREFIX_TOKENS) * AGENT_SESSIONS if p.ssd_cache_gb else p.context
            assert p.kv_cache_bits == 4 or p.cache_tokens >= wanted
    # together under the working-set limit (or exactly at the plan when the budget is all of it)
    ceiling = max(METAL_TOTAL_MAX, total_mb * MB / ws) + 0.01 * len(profiles)  # + rounding up to 1%
    assert sum(p.gpu_memory_utilization for p in profiles.values()) <= ceiling


def _need(name: str, gb: float, ctx: int = 8192, per_token: int = 147456, head: int | None = 128) -> TierNeed:
    return TierNeed(name, int(gb * GB), ctx, int(gb * GB * 0.6), per_token * ctx, per_token, head)


def test_short_budget_shares_the_cache_and_quantizes_the_long_tier() -> None:
    needs = [_need("standard", 6), _need("fast", 3), _need("longctx", 4, ctx=32768)]
    profiles = plan(needs, int(13.6 * GB), 16 * GB)
    assert sum(p.planned_mb for p in profiles.values()) <= int(13.6 * GB) // MB
    long = profiles["longctx"]
    fp16_tokens = long.cache_memory_mb * MB // long.kv_bytes_per_token
    assert long.kv_cache_bits in (4, 8) and long.cache_tokens > fp16_tokens
    assert "--kv-cache-quantization" in server_flags(long) and "--use-paged-cache" not in server_flags(long)


def test_no_room_left_means_no_prefix_cache() -> None:
    profiles = plan([_need("standard", 10)], 10 * GB, 16 * GB)
    p = profiles["standard"]
    assert p.cache_memory_mb == 0 and not p.prefix_cache
    assert "--disable-prefix-cache" in server_flags(p)


def test_fixed_profiles_are_kept_and_counted() -> None:
    first = plan([_need("standard", 4)], 12 * GB, 16 * GB)["standard"]
    both = plan([_need("standard", 4), _need("extra", 2)], 12 * GB, 16 * GB, fixed={"standard": first})
    assert both["standard"] == first
    assert sum(p.planned_mb for p in both.values()) <= 12 * GB // MB


def test_paged_flags_size_the_blocks_to_the_cap() -> None:
    p = ServingProfile(context=8192, need_mb=2000, cache_memory_mb=512, gpu_memory_utilization=0.2,
                       max_num_seqs=4, kv_bytes_per_token=256)
    flags = server_flags(p)
    assert flags[flags.index("--max-cache-blocks") + 1] == str(512 * MB // (256 * 64))
    for flag in ("--enable-prefix-cache", "--use-paged-cache", "--enable-metrics"):
        assert flag in flags
    assert flags[flags.index("--gpu-memory-utilization") + 1] == "0.2"
    assert flags[flags.index("--max-tokens") + 1] == "8192"  # the default of a request without one
    assert "--max-request-tokens" not in flags  # it would refuse clients that ask for more
    assert "32768" in server_flags(replace(p, context=131072))  # vllm-mlx's ceiling for --max-tokens


def test_kv_shape_from_config() -> None:
    cfg = {"num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
           "hidden_size": 4096}
    assert kv_shape(cfg) == (2 * 36 * 8 * 128 * 2, 128)  # Qwen3-8B: 144 KB per token
    assert kv_shape({"text_config": cfg}) == kv_shape(cfg)
    assert kv_shape({}) == (0, None)
    assert kv_shape({"num_hidden_layers": "x"}) == (0, None)


def _raw_stack(serving: dict | None = None, budget: int | None = None) -> dict:
    tier = {"name": "standard", "model": "m", "path": "/m", "port": 8100}
    if serving is not None:
        tier["serving"] = serving
    data = {"schema": 1, "tiers": [tier]}
    if budget is not None:
        data["memory_budget_mb"] = budget
    return data


def test_old_stack_yaml_without_profiles_still_loads() -> None:
    stack = parse_stack(_raw_stack())
    assert stack.tiers[0].serving is None and stack.memory_budget_mb is None
    assert "serving" not in dump_stack(stack)["tiers"][0]


def test_profile_round_trips_through_stack_yaml() -> None:
    p = ServingProfile(context=32768, need_mb=5000, cache_memory_mb=700, gpu_memory_utilization=0.31,
                       max_num_seqs=2, weights_mb=2000, kv_mb=1000, kv_bytes_per_token=65536, kv_cache_bits=8)
    stack = parse_stack(_raw_stack(dump_profile(p), budget=9000))
    assert stack.tiers[0].serving == p and stack.memory_budget_mb == 9000
    assert parse_stack(dump_stack(stack)) == stack


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("max_num_seqs", "four", "expected int"),
    ("cache_memory_mb", -1, "0 or more"),
    ("gpu_memory_utilization", 1.5, "at most 1"),
    ("kv_cache_bits", 3, "4, 8"),
    ("context", 0, "positive"),
    ("colour", 1, "unknown field"),
])
def test_bad_profile_fields_are_named(field: str, value: object, problem: str) -> None:
    good = dump_profile(ServingProfile(context=8192, need_mb=100, cache_memory_mb=10,
                                       gpu_memory_utilization=0.1, max_num_seqs=4))
    with pytest.raises(StateError) as err:
        parse_stack(_raw_stack({**good, field: value}))
    assert f"tiers[0].serving.{field}" in err.value.message and problem in err.value.message


def test_hand_edited_caps_over_the_budget_are_refused_with_the_numbers() -> None:
    ok = ServingProfile(context=8192, need_mb=2048, cache_memory_mb=512, gpu_memory_utilization=0.2,
                        max_num_seqs=4)
    check_budget({"standard": ok}, 4096)
    with pytest.raises(ConflictError) as err:
        check_budget({"standard": replace(ok, cache_memory_mb=4096)}, 4096)
    assert err.value.exit_code == ExitCode.CONFLICT == 5
    assert "6.0 GB" in err.value.message and "4.0 GB" in err.value.message and "--force" in err.value.hint


def test_guard_names_the_numbers_and_what_would_fit() -> None:
    guard(GuardInput(10_000, "available memory", {"standard": 4000}, {"fast": 5000}))
    with pytest.raises(ConflictError) as err:
        guard(GuardInput(10_000, "GPU working-set limit", {"standard": 6000, "longctx": 3000},
                         {"fast": 5000}))
    msg = err.value.message
    assert "8.8 GB" in msg and "GPU working-set limit is 9.8 GB" in msg and "only longctx would fit" in msg
    assert "fast" in msg and err.value.exit_code == 5


def test_tier_model_field_accepts_a_profile() -> None:
    p = ServingProfile(context=2048, need_mb=1800, cache_memory_mb=32, gpu_memory_utilization=0.09,
                       max_num_seqs=4)
    assert Tier("t", "m", "/m", 8100, serving=p).serving is p


def test_the_agent_tier_caches_two_sessions_and_keeps_them_on_disk() -> None:
    needs = [_need("standard", 8, ctx=131072), _need("fast", 3)]
    profiles = plan(needs, 40 * GB, 48 * GB, intent="agent")
    std, fast = profiles["standard"], profiles["fast"]
    assert std.cache_tokens >= AGENT_SESSIONS * AGENT_PREFIX_TOKENS  # two agents' prefixes
    assert std.ssd_cache_gb >= 1 and fast.ssd_cache_gb == 0
    flags = server_flags(std, "/home/x/cache/prefix/standard")
    assert flags[flags.index("--ssd-cache-dir") + 1] == "/home/x/cache/prefix/standard"
    assert flags[flags.index("--ssd-cache-max-gb") + 1] == f"{std.ssd_cache_gb:g}"
    assert "--use-paged-cache" not in flags  # vllm-mlx's on-disk tier needs the memory-aware cache
    assert "--ssd-cache-dir" not in server_flags(fast, "/x") and "--ssd-cache-dir" not in server_flags(std)
    assert parse_profile(dump_profile(std), "tiers[0].serving.", "stack.yaml") == std


def test_the_agent_intent_gives_standard_a_long_window_on_every_mac() -> None:
    from mlx_stack.core.scoring import AGENT_WINDOW, AGENT_WINDOW_MAX

    for chip, memory_gb in MACS:
        hw = plan_profile(Plan(chip, memory_gb=memory_gb))
        rec = recommend(hw, load_catalog(), intent="agent")
        for t in rec.tiers:
            if t.name != "standard":
                continue
            assert t.entry.capabilities.tool_calling
            assert AGENT_WINDOW <= t.context <= min(AGENT_WINDOW_MAX, t.entry.context_length)
            assert f"window {t.context // 1024}K tokens for coding agents" in t.reason
            # room for its sessions' prefixes (the plan serves its cache first)
            p = for_recommendation(rec, int(hw.gpu_limit_bytes or hw.memory_bytes))["standard"]
            assert p.cache_tokens >= AGENT_SESSIONS * AGENT_PREFIX_TOKENS * 0.99 and p.ssd_cache_gb >= 1
