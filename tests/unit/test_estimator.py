from __future__ import annotations

from dataclasses import replace

import pytest

from mlx_stack.core.estimator import DECODE, decode_tok_s, estimate, kv_bytes, memory_bytes, prefill_tok_s
from mlx_stack.core.hardware import cpu_profile
from mlx_stack.services.catalog_store import load_catalog
from mlx_stack.services.hardware import Plan, plan_profile


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_decode_matches_measurements_within_15pct(cat):
    m4pro = plan_profile(Plan("M4 Pro", None, 64))
    m5max = plan_profile(Plan("M5 Max", 40, 128))
    cases = (("qwen3-8b", "int4", m4pro, 51.1), ("qwen3-8b", "int4", m5max, 104.1),
             ("gemma-3-4b-it", "int8", m4pro, 52.9), ("qwen3-14b", "int8", m4pro, 15.8))
    for model, quant, hw, measured in cases:
        got = decode_tok_s(cat.get(model), quant, hw, 256)
        assert got is not None and abs(got - measured) / measured < 0.15, (model, got)


def test_decode_scales_with_bandwidth_and_quant_and_context(cat):
    e = cat.get("llama-3.3-70b-instruct")
    low, high = plan_profile(Plan("M4 Max", 32, 36)), plan_profile(Plan("M4 Max", 40, 128))
    assert decode_tok_s(e, "int4", high) > decode_tok_s(e, "int4", low) > decode_tok_s(e, "int8", low)
    assert decode_tok_s(e, "int4", high, 512) > decode_tok_s(e, "int4", high, 65536)


def test_moe_reads_active_weights(cat):
    hw = plan_profile(Plan("M4 Max", 40, 128))
    moe, dense = cat.get("qwen3-30b-a3b"), cat.get("qwen3-32b")
    assert decode_tok_s(moe, "int4", hw) > 2 * decode_tok_s(dense, "int4", hw)
    assert memory_bytes(moe, "int4") > 15e9  # all experts stay in memory


def test_kv_cache_shapes(cat):
    q8 = cat.get("qwen3-8b")
    assert kv_bytes(q8, 1000) == 1000 * 36 * 2 * 8 * 128 * 2
    assert kv_bytes(q8, 10**7) == kv_bytes(q8, q8.context_length)  # capped at the window
    gemma = cat.get("gemma-3-4b-it")  # 5 of 6 layers keep only a 1024-token window
    assert kv_bytes(gemma, 32768) < 0.3 * 34 * 2 * 4 * 256 * 2 * 32768
    hybrid = cat.get("qwen3.5-9b")
    assert 0 < kv_bytes(hybrid, 32768) < kv_bytes(q8, 32768)


def test_prefill_grows_with_gpu_cores_and_cpu_has_no_speeds(cat):
    e = cat.get("qwen3-8b")
    big, small = plan_profile(Plan("M4 Max", 40, 128)), plan_profile(Plan("M4", 10, 16))
    assert prefill_tok_s(e, big) > prefill_tok_s(e, small)
    cpu = cpu_profile("x86", 32 * 10**9, 8)
    est = estimate(e, "int4", cpu)
    assert est.decode_tok_s is None and est.prefill_tok_s is None and est.memory_bytes > est.weights_bytes
    assert est.as_dict()["source"] == "estimated"
    with pytest.raises(ValueError):
        estimate(e, "bf16", cpu)


def test_memory_is_weights_kv_and_overhead(cat):
    e = cat.get("qwen3-8b")
    est = estimate(e, "int4", plan_profile(Plan("M1", 8, 16)), 8192)
    assert est.memory_bytes > est.weights_bytes + est.kv_bytes
    assert 7e9 < est.memory_bytes < 10e9


def test_every_speed_states_its_context(cat):
    hw = plan_profile(Plan("M4 Max", 40, 128))
    est = estimate(cat.get("qwen3-8b"), "int4", hw, 32768)
    d = est.as_dict()
    assert d["decode_context"] == 512 and d["decode_full_context"] == 32768
    assert d["decode_tok_s"] > d["decode_full_tok_s"] > 0


def test_moe_speed_follows_active_not_total_params(cat):
    hw = plan_profile(Plan("M4 Max", 40, 128))
    small, big = cat.get("qwen3-30b-a3b"), cat.get("qwen3-235b-a22b-instruct-2507")
    # 7x the total params but a 22B active path: slower by roughly the active ratio, not the total
    ratio = decode_tok_s(small, "int4", hw) / decode_tok_s(big, "int4", hw)
    assert 2 < ratio < 235 / 30.5


def test_sub_1b_speed_is_bounded_by_fixed_per_token_costs(cat):
    fast = plan_profile(Plan("M5 Max", 40, 128))
    tiny = cat.get("qwen3-0.6b")
    assert decode_tok_s(tiny, "int4", fast) < 1000 / DECODE.fixed_ms


def test_older_chip_generations_pay_more_per_token(cat):
    e = cat.get("qwen3-0.6b")
    m2, m4 = plan_profile(Plan("M2 Pro", 16, 32)), plan_profile(Plan("M4 Pro", 16, 48))
    m2_same_bw = replace(m2, bandwidth_gbs=m4.bandwidth_gbs)
    assert decode_tok_s(e, "int4", m2_same_bw) < decode_tok_s(e, "int4", m4)


def test_prefill_falls_with_prompt_length_and_ttft_is_prompt_over_speed(cat):
    from mlx_stack.core.estimator import ttft_s

    e, hw = cat.get("qwen3-8b"), plan_profile(Plan("M4 Max", 40, 128))
    short, mid, long = (prefill_tok_s(e, hw, n) for n in (2048, 32768, 98304))
    assert short > mid > long  # attention FLOPs grow with the prompt
    # At 96K an 8B's attention FLOPs (4 x 4096 x 48K x 36 layers) are twice its weight FLOPs;
    # the attention factor is checked on a 34K-token Mistral-7B run (benchmarks/estimator.py).
    assert 2 < short / long < 4
    t = ttft_s(e, "int4", hw, 16384)
    assert t == pytest.approx(16384 / prefill_tok_s(e, hw, 16384, "int4"))
    cached = ttft_s(e, "int4", hw, 16384, new_tokens=2048)
    assert 0 < cached < t / 4  # only the new turn is computed
    assert ttft_s(e, "int4", hw, 1000, new_tokens=2048) == pytest.approx(ttft_s(e, "int4", hw, 1000))


def test_prefill_flops_follow_active_params_and_sliding_windows(cat):
    hw = plan_profile(Plan("M4 Max", 40, 128))
    moe, dense = cat.get("qwen3-30b-a3b"), cat.get("qwen3-32b")
    assert prefill_tok_s(moe, hw) > 4 * prefill_tok_s(dense, hw)  # 3.3B active vs 32B
    # a 3.3B-active MoE prefills about like a dense 4B on an M4 Max (mlx-lm: 1,732 vs 1,622 tok/s
    # at 2K), and relatively slower on M1/M2 GPUs (their gather matmuls cost more)
    small = cat.get("qwen3-4b-instruct-2507")
    assert 0.85 < prefill_tok_s(moe, hw) / prefill_tok_s(small, hw) < 1.25
    m2 = plan_profile(Plan("M2 Max", 38, 64))
    ratio = lambda h: prefill_tok_s(moe, h) / prefill_tok_s(small, h)  # noqa: E731
    assert ratio(m2) < ratio(hw)
    gemma = cat.get("gemma-3-12b-it-qat")  # 5 of 6 layers attend to a 1,024-token window
    llama = cat.get("qwen3-14b")
    fall = lambda e: prefill_tok_s(e, hw, 2048) / prefill_tok_s(e, hw, 65536)  # noqa: E731
    assert fall(gemma) < fall(llama)


def test_m1_m2_pay_for_emulated_bf16_and_fp16_builds_do_not(cat):
    e = cat.get("qwen3-8b")
    m2, m3 = plan_profile(Plan("M2 Max", 38, 64)), plan_profile(Plan("M3 Max", 40, 128))
    bf16, fp16 = prefill_tok_s(e, m2), prefill_tok_s(e, m2, dtype="fp16")
    assert fp16 / bf16 > 1.3  # no bf16 arithmetic on M1/M2: emulated through float32
    assert prefill_tok_s(e, m3, dtype="fp16") == pytest.approx(prefill_tok_s(e, m3))  # M3 has bf16


def test_moe_prefill_splits_routed_experts_and_reads_them_per_chunk(cat):
    from mlx_stack.core.estimator import expert_fraction_used, matmul_params, routed_params

    moe = cat.get("qwen3-30b-a3b")  # 128 experts, 8 routed
    routed = routed_params(moe)
    assert routed == pytest.approx((30.5 - 3.3) * 1e9 * 8 / 120)  # 8 experts of (total - active) / 120
    assert 0 < routed < matmul_params(moe)
    assert routed_params(cat.get("qwen3-8b")) == 0
    assert expert_fraction_used(moe, 4) == pytest.approx(32 / 128) and expert_fraction_used(moe, 2048) == 1
    hw = plan_profile(Plan("M4 Max", 40, 128))
    # a short prompt reads every expert's weights for few tokens: slower per token than 2K
    assert prefill_tok_s(moe, hw, 128) < prefill_tok_s(moe, hw, 2048)
    dense = cat.get("qwen3-4b-instruct-2507")
    assert prefill_tok_s(dense, hw, 128) > prefill_tok_s(dense, hw, 2048)


def test_m5_neural_accelerators_and_ultra_dies(cat):
    e = cat.get("qwen3-8b")
    m4, m5 = plan_profile(Plan("M4 Max", 40, 128)), plan_profile(Plan("M5 Max", 40, 128))
    assert prefill_tok_s(e, m5) > 2 * prefill_tok_s(e, m4)
    m3u, m3m = plan_profile(Plan("M3 Ultra", 80, 256)), plan_profile(Plan("M3 Max", 40, 128))
    assert 1.7 < prefill_tok_s(e, m3u) / prefill_tok_s(e, m3m) < 2.0


def test_estimate_reports_time_to_first_token(cat):
    hw = plan_profile(Plan("M4 Pro", 20, 48))
    d = estimate(cat.get("qwen3-8b"), "int4", hw, prompt_tokens=8192).as_dict()
    assert d["prompt_tokens"] == 8192 and d["cached_new_tokens"] == 2048
    assert d["ttft_s"] > d["ttft_cached_s"] > 0
    assert d["ttft_s"] == pytest.approx(8192 / d["prefill_tok_s"], rel=0.01)


def test_peak_memory_adds_a_prefill_chunk_of_activations(cat):
    e = cat.get("qwen3-8b")
    assert memory_bytes(e, "int4", 8192, prompt_tokens=4096) > memory_bytes(e, "int4", 8192, prompt_tokens=64)
    assert memory_bytes(e, "int4", 8192, prompt_tokens=4096) == memory_bytes(e, "int4", 8192)  # a full chunk


def test_every_catalog_quant_is_a_setting_choice():
    from mlx_stack.core.catalog import QUANT_BITS
    from mlx_stack.core.config_schema import QUANTS

    assert set(QUANTS) == set(QUANT_BITS)
