"""Saved results on disk, the memory sampler, and the engine's handling of bad servers."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from mlx_stack.core import bench as core
from mlx_stack.core import bench_result as results
from mlx_stack.errors import ServiceError, UsageError
from mlx_stack.paths import Paths
from mlx_stack.services import bench, bench_store

PROFILE = "cpu-24gb"


def _result(model: str = "qwen3-0.6b", memory: float = 1.5, when: str = "2026-11-25T20:00:00+00:00"):
    single = core.summarize_single([core.Sample("short", 100, 11, 0.5, 1.5)])
    level = core.summarize_level(1, [core.Sample("code", 20, 11, 0.1, 1.1)], 1.1)
    return results.BenchResult(
        model=model, target=model, target_kind="catalog", profile=PROFILE, hardware="test",
        measured_at=when, iterations=1, max_tokens=16, prompts=("short",), single=single,
        concurrency=(level,), peak_memory_gb=memory,
    )


def test_save_and_load(isolated_home: Paths):
    path = bench_store.save(isolated_home, _result())
    assert path == isolated_home.benchmarks_dir / PROFILE / "qwen3-0.6b.json"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    saved = bench_store.load_saved(isolated_home, PROFILE)
    assert set(saved) == {"qwen3-0.6b"}
    assert saved["qwen3-0.6b"].memory_gb == 1.5
    assert saved["qwen3-0.6b"].gen_tok_s == pytest.approx(10.0)
    assert bench_store.load_saved(isolated_home, "m4-max-40c-128gb") == {}


def test_a_second_save_replaces_the_first(isolated_home: Paths):
    bench_store.save(isolated_home, _result(memory=1.5))
    bench_store.save(isolated_home, _result(memory=2.5, when="2026-11-25T21:00:00+00:00"))
    assert bench_store.load_saved(isolated_home, PROFILE)["qwen3-0.6b"].memory_gb == 2.5


def test_a_result_without_memory_is_not_saved(isolated_home: Paths):
    with pytest.raises(UsageError, match="peak_memory_gb"):
        bench_store.save(isolated_home, _result(memory=0.0))
    assert not isolated_home.benchmarks_dir.exists()


def test_bad_files_are_rejected_not_trusted(isolated_home: Paths):
    bench_store.save(isolated_home, _result("good"))
    folder = isolated_home.benchmarks_dir / PROFILE
    zero = _result("zero").to_dict() | {"peak_memory_gb": 0}
    (folder / "zero.json").write_text(json.dumps(zero))
    missing = _result("missing").to_dict()
    del missing["gen_tok_s"]
    (folder / "missing.json").write_text(json.dumps(missing))
    (folder / "broken.json").write_text("{not json")
    saved, rejected = bench_store.scan_saved(isolated_home, PROFILE)
    assert set(saved) == {"good"}
    reasons = {r.path.name: r.reason for r in rejected}
    assert set(reasons) == {"zero.json", "missing.json", "broken.json"}
    assert "not a positive measurement" in reasons["zero.json"]
    assert "missing field 'gen_tok_s'" in reasons["missing.json"]


def test_memory_sampler_sees_this_process():
    with bench.MemorySampler(os.getpid(), interval_s=0.01) as sampler:
        pass
    assert sampler.peak > 10 * 1024 * 1024
    with bench.MemorySampler(None) as nothing:
        pass
    assert nothing.peak == 0


def _client(handler) -> bench.Client:
    return bench.Client("http://fake/v1", "m", transport=httpx.MockTransport(handler), timeout_s=5)


def test_a_stream_with_usage():
    chunks = [
        {"choices": [{"delta": {"role": "assistant"}}]},
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}}]},
        {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2}},
    ]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(json.loads(request.content))
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    sample, start, end = _client(handler).stream(core.PROMPTS[0], "t1", 8)
    assert (sample.prompt_tokens, sample.completion_tokens) == (12, 2)
    assert 0 <= sample.ttft_s <= sample.total_s == pytest.approx(end - start)
    assert seen["stream"] is True and seen["stream_options"] == {"include_usage": True}
    assert seen["messages"][0]["content"].startswith("[run t1] ")


def test_a_server_error_is_a_service_error():
    client = _client(lambda request: httpx.Response(404, json={"detail": "model not found"}))
    with pytest.raises(ServiceError, match="HTTP 404"):
        client.stream(core.PROMPTS[0], "t", 8)


def test_garbage_and_dead_servers_are_service_errors():
    garbage = _client(lambda request: httpx.Response(200, text="data: {oops\n\n"))
    with pytest.raises(ServiceError, match="not JSON"):
        garbage.stream(core.PROMPTS[0], "t", 8)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ServiceError, match="ConnectError"):
        _client(refuse).stream(core.PROMPTS[0], "t", 8)


def _embedding(model: str = "qwen3-embedding-0.6b", memory: float = 0.9, **over: object) -> dict[str, object]:
    levels = [{"batch": b, "requests": 3, "texts_s": 10.0 * b, "tokens_s": 600.0 * b, "p50_ms": 5.0}
              for b in (1, 16, 64)]
    data = results.embedding_result(model=model, quant="int4", target="embed", profile=PROFILE,
                                    hardware="test", measured_at="2026-12-07T13:00:00+00:00",
                                    levels=levels, peak_rss_gb=memory)  # type: ignore[arg-type]
    return {**data, **over}


def test_an_embedding_bench_is_saved_and_feeds_the_recommender(isolated_home: Paths):
    from mlx_stack.core.hardware import HardwareProfile
    from mlx_stack.core.retrieval_plan import pick
    from mlx_stack.core.scoring import recommend
    from mlx_stack.services.catalog_store import load_catalog
    from mlx_stack.services.models import saved_results

    path = bench_store.save_embedding(isolated_home, _embedding())
    assert path == isolated_home.benchmarks_dir / PROFILE / "qwen3-embedding-0.6b.json"
    saved = bench_store.load_saved(isolated_home, PROFILE)["qwen3-embedding-0.6b"]
    assert isinstance(saved, results.SavedEmbedding)
    assert (saved.texts_s, saved.tokens_s, saved.memory_bytes) == (640.0, 38400.0, 900_000_000)
    mapped = saved_results(isolated_home, PROFILE)["qwen3-embedding-0.6b"]
    assert mapped == {"kind": "embedding", "texts_s": 640.0, "tokens_s": 38400.0, "memory_bytes": 900_000_000,
                      "quant": "int4"}
    catalog = load_catalog()
    left = int(2.5 * 2**30)  # what the chat tiers leave: the 0.6B encoder fits (2.1 GB estimated)
    plain, _ = pick(catalog, left)
    assert plain[0].entry.id == "qwen3-embedding-0.6b" and "measured" not in plain[0].reason
    fed, _ = pick(catalog, left, saved={"qwen3-embedding-0.6b": mapped})
    assert fed[0].entry.id == "qwen3-embedding-0.6b" and fed[0].memory_bytes == 900_000_000
    assert "measured here: 0.8 GB, 640 texts/s at batch 64 (saved benchmark)" in fed[0].reason
    huge = {**mapped, "memory_bytes": 10 * 2**30}  # measured far above the estimate: no longer fits
    assert pick(catalog, left, saved={"qwen3-embedding-0.6b": huge})[0][0].entry.id != "qwen3-embedding-0.6b"
    other_quant = {**mapped, "quant": "int8"}  # another quantization's figure is not used
    assert pick(catalog, left, saved={"qwen3-embedding-0.6b": other_quant})[0][0].memory_bytes != 900_000_000
    chat = {**mapped, "kind": None}  # a chat result saved under that id is not an encoder's
    assert pick(catalog, left, saved={"qwen3-embedding-0.6b": chat})[0][0].memory_bytes != 900_000_000
    # through the recommender, as `models --recommend` and `setup` call it
    cpu = HardwareProfile(kind="cpu", chip="cpu", memory_bytes=24 * 2**30)
    best = {"qwen3-embedding-8b": {**mapped, "memory_bytes": 5 * 10**9}}
    rec = recommend(cpu, catalog, budget_bytes=64 * 2**30, saved=best)
    assert rec.retrieval[0].entry.id == "qwen3-embedding-8b" and rec.retrieval[0].memory_bytes == 5 * 10**9
    assert "measured here" in rec.retrieval[0].reason


@pytest.mark.parametrize(("over", "why"), [
    ({"texts_s": 0}, "texts_s is 0"),
    ({"tokens_s": None}, "missing field 'tokens_s'"),
    ({"peak_memory_gb": 0.0}, "peak_memory_gb is 0.0"),
    ({"kind": "vector"}, "unknown kind"),
])
def test_a_bad_embedding_bench_is_refused_and_never_used(isolated_home: Paths, over: dict[str, object],
                                                         why: str):
    with pytest.raises(UsageError, match="cannot be saved"):
        bench_store.save_embedding(isolated_home, _embedding(**over))
    folder = isolated_home.benchmarks_dir / PROFILE
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "enc.json").write_text(json.dumps(_embedding(**over)))
    saved, rejected = bench_store.scan_saved(isolated_home, PROFILE)
    assert saved == {} and len(rejected) == 1 and why in rejected[0].reason
