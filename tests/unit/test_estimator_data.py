"""The published prefill rows benchmarks/estimator.py fits on: well-formed, each with a source."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("estimator_bench", ROOT / "benchmarks" / "estimator.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["estimator_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_every_prefill_row_states_dtype_level_and_source(bench):
    runs, _ = bench.load_prefill_runs()
    assert all(r.dtype in ("bf16", "fp16") and r.level in ("kernel", "server", "unstated") for r in runs)
    assert all(r.source_key and (r.level == "unstated" or r.source.startswith("https://")) for r in runs)
    assert len({r.chip for r in runs if r.measured}) >= 10
    assert sum(bench.prefill_class(bench._entry(r.model_id)) == "MoE" for r in runs if r.measured) >= 20


def test_a_source_is_one_issue_pull_request_or_harness_folder(bench):
    def key(url: str, level: str = "kernel") -> str:
        return bench.PrefillRun("m", "int4", "M4 Max", None, 64, 512, 1.0, None, level, url).source_key

    assert key("https://github.com/jundot/omlx/issues/1097 (2026-05-28)") == "jundot/omlx#1097"
    assert key("https://github.com/ml-explore/mlx-lm/pull/406 (2025-08-28)") == "ml-explore/mlx-lm#406"
    folder = "https://github.com/raullenchai/Rapid-MLX/blob/7222ca7/community-benchmarks/submissions"
    a, b = key(f"{folder}/a.json (x)"), key(f"{folder}/b.json (y)")
    assert a == b == "raullenchai/Rapid-MLX:community-benchmarks/submissions"
    assert key("mlx_transformers_benchmark (2026-04-02)", "unstated") == "mlx_transformers_benchmark"
