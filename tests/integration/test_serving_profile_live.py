"""A real demo tier started with its serving profile's flags (vllm-mlx 0.6, CPU backend):
it answers, its paged cache holds the planned number of blocks, metrics are on, a client
asking for 32k tokens is served, and `status` shows its RSS beside its plan. Plus one tier
with a quantized-cache profile (8-bit KV in the memory-aware cache), which reuses a prefix."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from mlx_stack.core.memory_plan import ServingProfile
from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import demo_stack, lifecycle, stack_store
from mlx_stack.services.running import base_url
from mlx_stack.services.service_control import command_for, start_service, stop_service
from mlx_stack.system import ports

pytestmark = pytest.mark.integration

TIER = "standard"


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Paths, str]]:
    home = Paths(tmp_path_factory.mktemp("profile") / "home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLX_STACK_HOME", str(home.home))
        demo_stack.write_demo_stack(home)
        stack = stack_store.load(home)
        stack = replace(stack, tiers=tuple(replace(t, port=ports.free_port()) for t in stack.tiers),
                        gateway=replace(stack.gateway, port=ports.free_port()))
        stack_store.save(home, stack)
        try:
            start_service(home, TIER, timeout=300)  # the memory guard runs here too
            yield home, base_url(stack, TIER)
        finally:
            stop_service(home, TIER, grace=5)


def test_the_tier_runs_with_the_rendered_flags(tier: tuple[Paths, str]) -> None:
    home, url = tier
    stack = stack_store.load(home)
    profile = stack.tier(TIER).serving
    assert profile is not None
    argv = command_for(home, stack, TIER).argv
    for flag in ("--max-cache-blocks", "--gpu-memory-utilization", "--max-num-seqs", "--enable-metrics",
                 "--max-tokens", "--enable-prefix-cache"):
        assert flag in argv
    status = httpx.get(f"{url}/v1/status", timeout=10).json()
    assert status["cache"]["max_blocks"] == profile.cache_blocks  # not vllm-mlx's 1000-block default
    assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200


def test_clients_asking_for_many_tokens_are_served(tier: tuple[Paths, str]) -> None:
    """Agent clients send max_tokens of 32k and more: a tier must not refuse them."""
    _, url = tier
    # Streamed, and left after the first chunk: random weights over a realistic vocabulary
    # need not reach any stop string soon (only the refusal is under test).
    body = {"model": TIER, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 32000,
            "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as r:
        assert r.status_code == 200
        assert next(r.iter_lines()).startswith("data: ")


def test_status_shows_the_measured_memory_beside_the_plan(tier: tuple[Paths, str]) -> None:
    home, _ = tier
    deadline = time.monotonic() + 60
    while True:
        report = lifecycle.status(home, timeout=30)
        s = next(x for x in report.services if x.name == TIER)
        if s.rss_bytes or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    plan = stack_store.load(home).tier(TIER).serving
    assert s.rss_bytes and s.rss_bytes > 50 * 1024 * 1024
    assert s.planned_bytes == plan.planned_mb * 1024 * 1024  # type: ignore[union-attr]
    assert s.over_plan is False and s.metal_bytes is None  # no Metal on the CPU backend


def _head64_model(dest: Path) -> Path:
    """A tiny qwen2 whose head size is 64 (MLX quantizes KV in groups of 64)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen2

    from mlx_stack.services import demo_models

    tokenizer = demo_models._train_tokenizer([])
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = demo_models._config(len(tokenizer), 128, 2, 4096, eos, tied=True)
    config.update(num_attention_heads=2, num_key_value_heads=1)
    mx.random.seed(0)
    model = qwen2.Model(qwen2.ModelArgs.from_dict(config))
    weights = dict(tree_flatten(model.parameters()))
    return demo_models._write(dest, {"kind": "head64"}, tokenizer, config, weights)


def test_a_quantized_cache_profile_serves_and_reuses_prefixes(isolated_home: Paths, tmp_path: Path) -> None:
    """kv_cache_bits renders vllm-mlx's memory-aware cache with 8-bit KV: capped in MB, it
    stores the long prompt and the same prompt again is a hit."""
    folder = _head64_model(tmp_path / "head64")
    profile = ServingProfile(context=4096, need_mb=1536, cache_memory_mb=48, gpu_memory_utilization=0.1,
                             max_num_seqs=2, kv_bytes_per_token=512, kv_cache_bits=8)
    stack = Stack((Tier("q", "test/head64", str(folder), ports.free_port(), serving=profile),), ("q",),
                  Gateway(port=ports.free_port()))
    stack_store.save(isolated_home, stack)
    try:
        start_service(isolated_home, "q", timeout=300)
        url = base_url(stack, "q")
        prompt = " ".join(f"word{i}" for i in range(300))
        body = {"model": "q", "messages": [{"role": "user", "content": prompt}], "max_tokens": 4}
        for _ in range(2):
            assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).status_code == 200
        cache = httpx.get(f"{url}/v1/status", timeout=10).json()["cache"]
        assert cache["max_memory_mb"] == 48 and cache["store_rejections"] == 0 and cache["hits"] >= 1
    finally:
        stop_service(isolated_home, "q", grace=5)
