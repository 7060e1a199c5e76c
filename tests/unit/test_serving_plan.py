"""services.serving_plan: needs from a model folder, a stack planned within its budget,
and `status` memory beside the plan (fake readings of RSS and Metal)."""

from __future__ import annotations

import json
from pathlib import Path

from mlx_stack.core.hardware import cpu_profile
from mlx_stack.core.memory_plan import MB, ServingProfile
from mlx_stack.core.service_state import ServiceStatus
from mlx_stack.core.stack import Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import serving_plan

GIB = 1024**3


def _folder(tmp_path: Path, name: str, weights: int = 3 * MB) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * weights)
    (folder / "config.json").write_text(json.dumps({
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": 64}))
    return folder


def test_need_from_folder_counts_weights_on_disk_and_kv_from_config(tmp_path: Path) -> None:
    tier = Tier("longctx", "m", str(_folder(tmp_path, "m")), 8100, context_window=8192)
    need = serving_plan.need_from_folder(tier)
    assert need.weights_bytes == 3 * MB and need.kv_bytes_per_token == 2 * 2 * 2 * 16 * 2
    assert need.context == 8192  # longctx plans 32k, but the window is 8k
    assert need.need_bytes > need.weights_bytes + need.kv_bytes  # + activations and the server


def test_planned_stack_fits_its_budget_and_keeps_existing_profiles(tmp_path: Path,
                                                                  isolated_home: Paths) -> None:
    hw = cpu_profile("test cpu", 16 * GIB, 4)
    tiers = tuple(Tier(n, "m", str(_folder(tmp_path, n)), 8100 + i, context_window=2048)
                  for i, n in enumerate(("standard", "fast")))
    planned = serving_plan.plan_stack(isolated_home, Stack(tiers, ("standard", "fast")), hw=hw)
    stack = planned.stack
    assert all(t.serving is not None for t in stack.tiers) and not planned.over_budget
    assert stack.memory_budget_mb == planned.budget_bytes // MB  # 40% of 16 GB
    assert sum(t.serving.planned_mb for t in stack.tiers) <= stack.memory_budget_mb  # type: ignore[union-attr]
    kept = stack.tiers[0].serving
    extra = Tier("extra", "m", str(_folder(tmp_path, "extra")), 8110)
    again = serving_plan.plan_stack(isolated_home, stack.with_tier(extra), hw=hw).stack
    assert again.tier("standard").serving == kept and again.tier("extra").serving is not None


def test_status_puts_measured_memory_beside_the_plan(isolated_home: Paths) -> None:
    plan = ServingProfile(context=8192, need_mb=1000, cache_memory_mb=24, gpu_memory_utilization=0.1,
                          max_num_seqs=4)
    stack = Stack((Tier("standard", "m", "/m", 8100, serving=plan),
                   Tier("fast", "m", "/f", 8101, serving=plan)), ("standard", "fast"))
    statuses = [ServiceStatus("standard", "tier", "healthy", 8100, pid=11),
                ServiceStatus("fast", "tier", "healthy", 8101, pid=12),
                ServiceStatus("gateway", "gateway", "healthy", 4000, pid=13)]
    rss = {11: 700 * MB, 12: 1300 * MB}
    out = serving_plan.measure(isolated_home, stack, statuses, rss_of=rss.get,
                               metal_of=lambda url: 900 * MB if url.endswith(":8100") else None)
    std, fast, gw = out
    assert std.rss_bytes == 700 * MB and std.metal_bytes == 900 * MB and std.planned_bytes == 1024 * MB
    assert not std.over_plan and std.detail is None
    assert fast.over_plan and fast.detail is not None and "over plan" in fast.detail  # 1.3 GB > 1.1 x 1 GB
    assert gw.planned_bytes is None and gw.rss_bytes is None


def test_the_demo_stack_fits_an_8_gb_mac() -> None:
    from mlx_stack.core.hardware import default_gpu_limit
    from mlx_stack.core.memory_plan import MIN_CACHE_MB
    from mlx_stack.services.demo_stack import DEMO_NEED_BYTES, DEMO_TIERS

    planned = len(DEMO_TIERS) * (DEMO_NEED_BYTES + MIN_CACHE_MB * MB)
    assert planned <= default_gpu_limit(8 * GIB)
