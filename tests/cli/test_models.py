from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import cli_command, free_port, hub_env

PLAN = ("--chip", "M4 Max", "--gpu-cores", "40", "--memory", "128")


def _json(r):
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_no_flags_lists_local_models(run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert _json(run("models", "--json")) == []
    r = run("models")
    assert r.exit_code == 0 and "no local models yet" in r.stderr
    folder = tmp_path / "md" / "my-model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"quantization": {"bits": 4}}')
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    assert run("config", "set", "model-dir", str(tmp_path / "md")).exit_code == 0
    rows = _json(run("models", "--json"))
    assert [(m["source"], m["quantization"]) for m in rows] == [("model-dir", "int4")]
    assert "my-model" in run("models").stdout


def test_catalog_json_entries(run):
    data = _json(run("models", "--catalog", "--json", *PLAN))
    assert data["hardware"]["chip"] == "M4 Max" and len(data["models"]) >= 20
    entry = next(m for m in data["models"] if m["id"] == "qwen3-8b")
    assert {"id", "repos", "decode_tok_s", "prefill_tok_s", "memory_bytes", "fits", "source"} <= set(entry)
    assert entry["repos"]["int4"]["repo"] == "mlx-community/Qwen3-8B-4bit"
    assert entry["decode_tok_s"] > 0 and entry["prefill_tok_s"] > 0 and entry["fits"] is True
    assert entry["source"] == "estimated"
    assert entry["decode_context"] < entry["decode_full_context"] == entry["context"] == 8192
    assert 0 < entry["decode_full_tok_s"] < entry["decode_tok_s"]
    assert entry["quality"]["basis"] == "published" and "https://" in entry["quality"]["source"]
    assert set(entry["sources"]) == {"decode", "prefill", "memory", "quality"}
    big = next(m for m in data["models"] if m["id"] == "llama-3.3-70b-instruct")
    small = _json(run("models", "--catalog", "--json", "--chip", "M1", "--memory", "8"))
    assert big["fits"] and not next(m for m in small["models"] if m["id"] == big["id"])["fits"]


def test_catalog_filters_and_text(run):
    rows = _json(run("models", "--catalog", "--json", "--family", "llama", *PLAN))["models"]
    assert rows and {m["family"] for m in rows} == {"llama"}
    rows = _json(run("models", "--catalog", "--json", "--tag", "code", "--tool-calling", *PLAN))["models"]
    assert rows and all("code" in m["tags"] and m["capabilities"]["tool_calling"] for m in rows)
    r = run("models", "--catalog", "--quant", "int8", *PLAN)
    assert r.exit_code == 0 and "qwen3-8b" in r.stdout and "546 GB/s" in r.stdout
    assert "estimated" in r.stdout


def test_catalog_lists_embedding_and_rerank_models_apart(run, isolated_home):
    from mlx_stack.core import bench_result
    from mlx_stack.services import bench_store

    data = _json(run("models", "--catalog", "--json", "--kind", "embedding", *PLAN))
    assert data["models"] == [] and {r["kind"] for r in data["retrieval"]} == {"embedding"}
    row = next(r for r in data["retrieval"] if r["id"] == "qwen3-embedding-0.6b")
    assert (row["dimensions"], row["max_input_tokens"], row["matryoshka"]) == (1024, 32768, True)
    assert row["quant"] == "int4"
    assert row["disk_gb"] == 0.34 and row["memory_bytes"] > 0 and row["fits"] is True
    assert row["memory_source"] == "estimated" and row["texts_s"] is None
    assert row["score"]["score"] == 64.64 and row["score"]["source"].startswith("https://")
    rerank = _json(run("models", "--catalog", "--json", "--kind", "rerank", *PLAN))["retrieval"]
    assert rerank and {r["kind"] for r in rerank} == {"rerank"}
    everything = _json(run("models", "--catalog", "--json", *PLAN))
    assert everything["models"] and {r["kind"] for r in everything["retrieval"]} == {"embedding", "rerank"}
    assert not any(m["id"].startswith("qwen3-embedding") for m in everything["models"])
    assert _json(run("models", "--catalog", "--json", "--kind", "chat", *PLAN))["retrieval"] == []
    r = run("models", "--catalog", *PLAN)
    assert r.exit_code == 0 and "qwen3-8b" in r.stdout and "Embedding and rerank models" in r.stdout
    assert "jina-reranker-v2-base-multilingual" in r.stdout and "4096*" in r.stdout
    r = run("models", "--catalog", "--kind", "embedding", *PLAN)
    assert r.exit_code == 0 and "qwen3-8b " not in r.stdout and "qwen3-embedding-8b" in r.stdout
    # a saved bench of an embedding tier on this profile: its measured memory is listed
    profile = everything["hardware"]["profile_key"]
    levels = [{"batch": 64, "requests": 3, "texts_s": 50.0, "tokens_s": 3000.0, "p50_ms": 9.0}]
    bench_store.save_embedding(isolated_home, bench_result.embedding_result(
        model="mlx-community/Qwen3-Embedding-0.6B-4bit-DWQ", quant=None, target="embed", profile=profile,
        hardware="test", measured_at="2026-12-07T13:00:00+00:00", levels=levels, peak_rss_gb=1.25))
    rows = _json(run("models", "--catalog", "--json", "--kind", "embedding", *PLAN))["retrieval"]
    row = next(r for r in rows if r["id"] == "qwen3-embedding-0.6b")
    assert (row["memory_bytes"], row["memory_source"], row["texts_s"]) == (
        1_250_000_000, "measured (saved benchmark)", 50.0)


@pytest.mark.parametrize("args", [("--catalog", "--kind", "vector"), ("--kind", "embedding"),
                                  ("--recommend", "--kind", "chat")])
def test_kind_is_checked(run, args):
    r = run("models", *args)
    assert r.exit_code == 2 and "--kind" in r.stderr and "Traceback" not in r.stderr


def test_catalog_on_this_machine_measured_on_m5_max(run):
    data = _json(run("models", "--catalog", "--json", "--chip", "M5 Max", "--gpu-cores", "40",
                     "--memory", "128"))
    entry = next(m for m in data["models"] if m["id"] == "qwen3-8b")
    assert entry["decode_tok_s"] == 104.1 and entry["source"].startswith("measured")
    assert _json(run("models", "--catalog", "--json"))["models"]  # this machine, no plan


def test_recommend_json_and_text(run):
    data = _json(run("models", "--recommend", "--json", *PLAN))
    assert [t["tier"] for t in data["tiers"]] == ["standard", "fast", "longctx"]
    assert data["total_memory_bytes"] <= data["budget_bytes"]
    assert data["weights"]["quality"] == 0.55
    for t in data["tiers"]:
        assert t["decode_context"] < t["decode_full_context"] == t["context"]
        assert t["quality"]["basis"] in ("published", "estimated") and t["sources"]["quality"]
    r = run("models", "--recommend", "--intent", "agent-fleet", "--show-all", *PLAN)
    assert r.exit_code == 0 and "All candidates" in r.stdout and "standard:" in r.stderr
    assert "quality: published" in r.stderr and "decode@512" in r.stdout
    data = _json(run("models", "--recommend", "--json", "--show-all", "--budget", "8gb", *PLAN))
    assert data["budget_bytes"] == 8 * 1024**3 and data["candidates"]
    assert data["total_memory_bytes"] <= data["budget_bytes"]


@pytest.mark.parametrize("budget, expect", [
    ("30gb", 30 * 1024**3), ("30GB", 30 * 1024**3), ("30 GB", 30 * 1024**3), ("25%", 32 * 1024**3),
])
def test_good_budgets(run, budget, expect):
    assert _json(run("models", "--recommend", "--json", "--budget", budget, *PLAN))["budget_bytes"] == expect


@pytest.mark.parametrize("budget", ["30", "0", "0gb", "-1", "-1gb", "abc", "30xb", "0%", "150%"])
def test_bad_budgets(run, budget):
    r = run("models", "--recommend", "--budget", budget, *PLAN)
    assert r.exit_code == 2, (budget, r.stderr)
    assert "budget" in r.stderr and "Traceback" not in r.stderr


def test_budget_above_the_gpu_limit_is_capped(run):
    data = _json(run("models", "--recommend", "--json", "--budget", "200gb", *PLAN))
    assert data["budget_bytes"] == 96 * 1024**3 and "capped" in data["budget"]


@pytest.mark.parametrize("args, code, text", [
    (("--catalog", "--recommend"), 2, "cannot be combined"),
    (("--recommend", "--available"), 2, "cannot be combined"),
    (("--budget", "30gb"), 2, "--budget works only with --recommend"),
    (("--catalog", "--show-all"), 2, "--show-all works only with --recommend"),
    (("--recommend", "--family", "qwen3"), 2, "--family works only with"),
    (("--chip", "M4 Max"), 2, "plan flags"),
    (("--catalog", "--family", "gpt"), 4, "unknown family"),
    (("--catalog", "--tag", "poetry"), 4, "unknown tag"),
    (("--recommend", "--intent", "speedy"), 2, "unknown intent"),
    (("--catalog", "--quant", "int3"), 2, "invalid --quant 'int3': expected one of int4, int6, int8, bf16"),
    (("--catalog", "--chip", "M7 Pro"), 4, "unknown chip"),
    (("--catalog", "--chip", "M4 Max", "--gpu-cores", "36"), 2, "no 36-core GPU"),
    (("--catalog", "--memory", "64"), 2, "needs --chip"),
    (("--catalog", "--chip", "M4", "--memory", "lots"), 2, "invalid --memory"),
    (("--catalog", "--bandwidth", "0"), 2, "invalid --bandwidth"),
])
def test_bad_input(run, args, code, text):
    r = run("models", *args)
    assert r.exit_code == code, r.stderr
    assert text in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("error:") == 1


def test_unknown_chip_lists_the_known_ones(run):
    r = run("models", "--recommend", "--chip", "M7 Pro")
    assert r.exit_code == 4 and "M4 Max" in r.stderr and "--bandwidth" in r.stderr
    data = _json(run("models", "--recommend", "--json", "--chip", "M7 Pro", "--memory", "64",
                     "--bandwidth", "400"))
    assert data["hardware"]["bandwidth_gbs"] == 400 and data["tiers"]


def test_bandwidth_alone_gives_this_machine_speeds(run):
    data = _json(run("models", "--catalog", "--json", "--bandwidth", "100"))
    assert data["hardware"]["bandwidth_gbs"] == 100
    assert all(m["decode_tok_s"] for m in data["models"])


def test_available_offline_is_one_clear_error(run):
    r = run("models", "--available")  # conftest sets HF_HUB_OFFLINE=1
    assert r.exit_code == 6 and "offline mode is on" in r.stderr and "Traceback" not in r.stderr


def test_available_unreachable_hub(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = subprocess.run(cli_command("models", "--available", "--family", "mistral"),
                          env=hub_env(closed, tmp_path / "hf"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 6, done.stderr
    assert "cannot reach the Hugging Face Hub" in done.stderr and "Traceback" not in done.stderr


def test_saved_benchmarks_override_estimates(run, isolated_home):
    from mlx_stack.core.bench_result import RESULT_SCHEMA
    from mlx_stack.services.bench_store import result_path

    profile = "m4-max-40c-128gb"
    for model, tok_s in (("qwen3-8b", 61.5), ("mlx-community/Qwen3-14B-4bit", 33.0)):
        path = result_path(isolated_home, profile, model)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"schema": RESULT_SCHEMA, "model": model, "profile": profile, "quant": "int4",
                "gen_tok_s": tok_s, "prompt_tok_s": 500.0, "peak_memory_gb": 9.0}
        path.write_text(json.dumps(data))
    rows = {m["id"]: m for m in _json(run("models", "--catalog", "--json", *PLAN))["models"]}
    assert rows["qwen3-8b"]["decode_tok_s"] == 61.5 and rows["qwen3-8b"]["memory_bytes"] == 9 * 10**9
    assert rows["qwen3-14b"]["decode_tok_s"] == 33.0
    assert rows["qwen3-8b"]["source"] == "measured (saved benchmark)"
    assert rows["qwen3-32b"]["source"] == "estimated"


def test_time_to_first_token_beside_decode(run):
    rows = {m["id"]: m for m in _json(run("models", "--catalog", "--json", *PLAN))["models"]}
    q = rows["qwen3-8b"]
    assert q["prompt_tokens"] == 16384 and q["cached_new_tokens"] == 2048
    assert q["ttft_s"] > q["ttft_cached_s"] > 0 and q["prefill_tok_s"] > 0
    longer = {m["id"]: m for m in _json(run("models", "--catalog", "--json", "--prompt-tokens", "65536",
                                            *PLAN))["models"]}["qwen3-8b"]
    assert longer["prompt_tokens"] == 65536 and longer["ttft_s"] > 4 * q["ttft_s"]
    tiers = _json(run("models", "--recommend", "--json", "--prompt-tokens", "32768", *PLAN))["tiers"]
    assert all(t["prompt_tokens"] == 32768 and t["ttft_s"] > t["ttft_cached_s"] for t in tiers)
    r = run("models", "--recommend", *PLAN)
    assert "TTFT@16k" in r.stdout and "prefix-cache hit" in r.stdout + r.stderr
    assert "TTFT@16k" in run("models", "--catalog", *PLAN).stdout


def test_every_catalog_quant_is_accepted(run):
    data = _json(run("models", "--catalog", "--json", "--quant", "int6", *PLAN))
    rows = {m["id"]: m for m in data["models"]}
    assert rows["nemotron-nano-9b-v2"]["quant"] == "int6"  # a model with an int6 repo gets it
    assert rows["qwen3-8b"]["quant"] == "int4"  # the others their preferred quant
    assert _json(run("models", "--recommend", "--json", "--quant", "INT6", *PLAN))["tiers"]


@pytest.mark.parametrize(("args", "text"), [
    (("--catalog", "--prompt-tokens", "0", *PLAN), "invalid --prompt-tokens 0"),
    (("--recommend", "--prompt-tokens", "-5", *PLAN), "invalid --prompt-tokens -5"),
    (("--prompt-tokens", "100"), "--prompt-tokens works only with"),
])
def test_bad_prompt_tokens(run, args, text):
    r = run("models", *args)
    assert r.exit_code == 2 and text in r.stderr and "Traceback" not in r.stderr
