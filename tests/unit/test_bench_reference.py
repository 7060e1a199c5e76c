"""The reference a benchmark is judged against: catalog measurement, else the estimate."""

from __future__ import annotations

import pytest

from mlx_stack.core import bench_result as results
from mlx_stack.core.hardware import GIB, cpu_profile
from mlx_stack.services import bench_reference
from mlx_stack.services.hardware import Plan, plan_profile


def test_the_catalog_measurement_for_this_chip_comes_first():
    hw = plan_profile(Plan("M4 Pro", gpu_cores=20, memory_gb=64))
    ref = bench_reference.reference("qwen3-0.6b", "int4", hw)
    assert ref is not None and ref.source.startswith("catalog measurement (")
    assert ref.gen_tps == pytest.approx(326.9)
    assert ref.prompt_tps == pytest.approx(4261.2)
    # MLX's peak plus one server process: the benchmark counts the server's whole tree
    assert ref.memory_gb == pytest.approx((1.71 * GIB + 1e9) / results.GB)
    assert bench_reference.reference("qwen3-0.6b", "int8", hw).gen_tps == pytest.approx(243.4)  # type: ignore[union-attr]


def test_otherwise_the_estimate():
    hw = plan_profile(Plan("M1", gpu_cores=8, memory_gb=16))
    ref = bench_reference.reference("qwen3-0.6b", "int4", hw)
    assert ref is not None and ref.source.startswith("estimate for qwen3-0.6b int4")
    assert ref.gen_tps and ref.gen_tps > 0 and ref.prompt_tps and ref.memory_gb and ref.memory_gb > 1


def test_on_a_cpu_profile_only_memory_is_estimated():
    ref = bench_reference.reference("qwen3-0.6b", None, cpu_profile("x86", 16 * GIB, 8))
    assert ref is not None
    assert ref.gen_tps is None and ref.prompt_tps is None and ref.memory_gb and ref.memory_gb > 0


def test_no_reference_outside_the_catalog():
    assert bench_reference.reference("local:tiny", None, cpu_profile("x86", 16 * GIB, 8)) is None


def test_repos_map_to_catalog_ids():
    assert bench_reference.catalog_for_repo("mlx-community/Qwen3-0.6B-4bit") == ("qwen3-0.6b", "int4")
    assert bench_reference.catalog_for_repo("someone/else") is None
