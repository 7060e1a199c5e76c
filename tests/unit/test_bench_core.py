"""Benchmark arithmetic, verdict thresholds, the bar chart and the saved format."""

from __future__ import annotations

import math

import pytest

from mlx_stack.core import bench as core
from mlx_stack.core import bench_result as results


def _sample(prompt: str = "p", pt: int = 100, ct: int = 11, ttft: float = 0.5, total: float = 1.5):
    return core.Sample(prompt, pt, ct, ttft, total)


def test_sample_speeds():
    s = _sample(ct=11, ttft=0.5, total=1.5)
    assert s.decode_s == pytest.approx(1.0)
    assert s.gen_tps == pytest.approx(10.0)  # 10 tokens after the first, in 1 s
    assert _sample(ct=1).gen_tps == 0.0
    assert _sample(ttft=2.0, total=2.0).gen_tps == 0.0


def test_summarize_single_uses_longest_prompt_for_prefill():
    samples = [
        _sample("short", pt=10, ct=11, ttft=0.1, total=1.1),
        _sample("long", pt=1000, ct=21, ttft=0.5, total=2.5),
        _sample("long", pt=1000, ct=1, ttft=1.5, total=1.5),  # one token: no decode time
    ]
    s = core.summarize_single(samples)
    assert s.requests == 3
    assert s.prompt_tokens == 2010
    assert s.completion_tokens == 33
    assert s.prompt_tps == pytest.approx(2000 / 2.0)
    assert s.gen_tps == pytest.approx((10 + 20) / (1.0 + 2.0))
    assert s.ttft_median_s == pytest.approx(0.5)
    assert s.ttft_max_s == pytest.approx(1.5)
    assert s.total_s == pytest.approx(5.1)
    with pytest.raises(ValueError):
        core.summarize_single([])


def test_summarize_level():
    samples = [_sample(ct=11, ttft=0.2, total=1.2), _sample(ct=21, ttft=0.4, total=2.4)]
    lv = core.summarize_level(2, samples, wall_s=2.5)
    assert lv.completion_tokens == 32
    assert lv.aggregate_tps == pytest.approx(32 / 2.5)
    assert lv.per_stream_tps == pytest.approx(10.0)
    assert lv.ttft_median_s == pytest.approx(0.3)


@pytest.mark.parametrize(("text", "levels"), [
    ("1,4,8", (1, 4, 8)), ("8, 1", (1, 8)), ("2,2", (2,)), ("64", (64,)),
])
def test_parse_levels(text: str, levels: tuple[int, ...]):
    assert core.parse_levels(text) == levels


@pytest.mark.parametrize("text", ["", "0", "65", "a", "1,,2", "-1", "1.5"])
def test_parse_levels_rejects(text: str):
    with pytest.raises(ValueError):
        core.parse_levels(text)


@pytest.mark.parametrize(("ratio", "status"), [
    (1.5, core.PASS), (0.80, core.PASS), (0.79, core.WARN), (0.50, core.WARN), (0.49, core.FAIL),
])
def test_speed_thresholds(ratio: float, status: str):
    v = core.speed_verdict("generation tok/s", 100 * ratio, 100.0)
    assert v.status == status
    assert v.ratio == pytest.approx(ratio)
    assert "80%" in v.rule and "50%" in v.rule


@pytest.mark.parametrize(("ratio", "status"), [
    (0.5, core.PASS), (1.20, core.PASS), (1.21, core.WARN), (1.50, core.WARN), (1.51, core.FAIL),
])
def test_memory_thresholds(ratio: float, status: str):
    v = core.memory_verdict(10 * ratio, 10.0)
    assert v.status == status
    assert "120%" in v.rule and "150%" in v.rule


def test_no_reference_is_not_a_verdict():
    assert core.speed_verdict("x", 5.0, None).status == core.NA
    assert core.speed_verdict("x", 5.0, 0.0).status == core.NA
    assert core.memory_verdict(1.0, None).status == core.NA
    assert core.memory_verdict(0.0, 4.0).status == core.NA  # memory not measured
    single = core.summarize_single([_sample()])
    statuses = [v.status for v in core.verdicts(single, 1.0, None)]
    assert statuses == [core.NA] * 3


def test_verdicts_against_a_reference():
    single = core.summarize_single([_sample(pt=100, ct=11, ttft=0.5, total=1.5)])  # 10 gen, 200 prompt
    ref = core.Reference("estimate", gen_tps=11.0, prompt_tps=1000.0, memory_gb=0.5)
    by_metric = {v.metric: v.status for v in core.verdicts(single, 1.0, ref)}
    assert by_metric == {"generation tok/s": core.PASS, "prompt tok/s": core.FAIL,
                         "peak memory (GB)": core.FAIL}


def _level(n: int, tps: float) -> core.ConcurrencyLevel:
    return core.ConcurrencyLevel(n, n, int(tps), 1.0, tps, tps / n, 0.1)


def test_bar_chart():
    chart = core.bar_chart([_level(1, 100.0), _level(4, 250.0), _level(8, 400.0)], width=20)
    lines = chart.splitlines()
    assert len(lines) == 4
    assert lines[1].startswith("1 | " + "█" * 5 + " ")
    assert lines[3].startswith("8 | " + "█" * 20 + " ")
    assert lines[2].rstrip().endswith("x2.5")
    assert lines[3].rstrip().endswith("400.0  x4.0")
    assert core.bar_chart([]) == ""
    tiny = core.bar_chart([_level(1, 0.001), _level(2, 1000.0)], width=10, bar="#").splitlines()
    assert "#" in tiny[1]  # a non-zero speed always shows at least one block


def test_prompt_set_and_tags():
    assert [p.name for p in core.prompt_set()] == ["short", "code", "summary", "long"]
    assert [p.name for p in core.prompt_set(2)] == ["short", "code"]
    assert len(core.prompt_set(0)) == 1 and len(core.prompt_set(99)) == 4
    lengths = [len(p.text) for p in core.PROMPTS]
    assert lengths == sorted(lengths)
    a, b = core.tagged(core.PROMPTS[0], "x1"), core.tagged(core.PROMPTS[0], "x2")
    assert a != b and a[:10] != b[:10]  # differ at the start: no shared prefix to cache


def _result(memory: float = 1.25, profile: str = "cpu-24gb") -> results.BenchResult:
    single = core.summarize_single([_sample()])
    return results.BenchResult(
        model="qwen3-0.6b", target="qwen3-0.6b", target_kind="catalog", profile=profile,
        hardware="test", measured_at="2026-11-25T20:00:00+00:00", iterations=1, max_tokens=16,
        prompts=("short",), single=single, concurrency=(_level(1, 10.0),), peak_memory_gb=memory,
        reference=None, verdicts=tuple(core.verdicts(single, memory, None)),
    )


def test_saved_round_trip():
    data = _result().to_dict()
    saved = results.parse_saved(data, "cpu-24gb")
    assert saved == results.SavedMeasurement("qwen3-0.6b", 10.0, 200.0, 1.25, "2026-11-25T20:00:00+00:00")
    assert data["concurrency"][0]["streams"] == 1
    assert {v["status"] for v in data["verdicts"]} == {core.NA}


@pytest.mark.parametrize(("change", "reason"), [
    ({"peak_memory_gb": 0}, "not a positive"),
    ({"peak_memory_gb": None}, "missing field"),
    ({"gen_tok_s": -3.0}, "not a positive"),
    ({"prompt_tok_s": math.nan}, "not a positive"),
    ({"gen_tok_s": True}, "missing field"),
    ({"model": ""}, "missing field 'model'"),
    ({"profile": "m4-max-40c-128gb"}, "another hardware profile"),
    ({"schema": 99}, "unknown schema"),
])
def test_saved_rejects(change: dict, reason: str):
    data = {**_result().to_dict(), **change}
    with pytest.raises(ValueError, match=reason):
        results.parse_saved(data, "cpu-24gb")


def test_saved_rejects_a_missing_field_and_non_objects():
    data = _result().to_dict()
    del data["prompt_tok_s"]
    with pytest.raises(ValueError, match="missing field 'prompt_tok_s'"):
        results.parse_saved(data, "cpu-24gb")
    with pytest.raises(ValueError):
        results.parse_saved([1, 2], "cpu-24gb")


def test_slug():
    assert results.slug("mlx-community/Qwen3-8B-4bit") == "mlx-community--qwen3-8b-4bit"
    assert results.slug("local:my model") == "local-my-model"
    assert results.slug("../..") == "unnamed"
