"""Speed and memory estimates for a catalog model on a hardware profile (pure).

Decode is bound by memory bandwidth. Time per generated token:

    t = bytes_read / (EFFICIENCY x bandwidth) + FIXED_MS
        + (HYBRID_MS x active_B [hybrid linear attention] + MOE_MS x total_B [MoE]) / gpu_cores

``bytes_read`` is the (active) weights at the quantization's bits per weight plus the
KV cache at the stated context. The fixed term is per-token latency (kernel launches,
sampling); the last term is compute that grows with model size and shrinks with GPU
cores, seen on Qwen3.5's linear-attention layers and on mixture-of-experts routing.
The constants were fitted on shared/data/mlx-measured-decode.csv (96 MLX runs on an
M4 Pro and an M5 Max); benchmarks/estimator.py reports the error (median about 4%).

Prefill is compute bound: tok/s = PREFILL_PER_CORE[generation] x gpu_cores / active_B,
from llama.cpp's Apple Silicon table (M1-M4, pp512) and the MLX runs (M4 Pro, M5 Max).

Memory = weights + KV cache at the context + activations (0.9 GB + 16% of weights, fitted
on the MLX peak memory) + one vllm-mlx server process (about 1 GB, measured).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlx_stack.core.catalog import QUANT_BITS, CatalogEntry
from mlx_stack.core.chips import chip_generation, chip_tier
from mlx_stack.core.hardware import HardwareProfile

EFFICIENCY = 0.94  # share of the rated bandwidth a decode step achieves
FIXED_MS = 1.5  # per-token latency independent of model size
HYBRID_MS = 25.0  # ms x GPU cores per billion active params, linear-attention layers
MOE_MS = 15.0  # ms x GPU cores per billion total params, expert routing
ULTRA_BANDWIDTH_SHARE = 0.6  # Ultra (two dies) reaches less of its rated bandwidth (llama.cpp table)
# prefill: tok/s x billion active params per GPU core, by chip generation (batch 512),
# plus a fixed time per prompt token (fitted on 0.5B-14B models)
PREFILL_PER_CORE = {1: 113.0, 2: 123.0, 3: 130.0, 4: 165.0, 5: 500.0}
PREFILL_FIXED_US = 30.0
ACTIVATION_FIXED = 0.9e9
ACTIVATION_SHARE = 0.16
SERVER_PROCESS = 1.0e9  # RSS of one vllm-mlx server (shared/design/verified-facts.md)
KV_BYTES = 2  # fp16 K and V
DEFAULT_CONTEXT = 8192
CALIBRATION_GPU_CORES = 20  # an M4 Pro without a stated count: its top bin


@dataclass(frozen=True)
class Estimate:
    """One model at one quantization on one machine. Speeds are None when the machine's
    bandwidth (decode) or GPU (prefill) is unknown. ``source`` is ``estimated`` or
    ``measured`` (a saved benchmark replaced the numbers)."""

    model_id: str
    quant: str
    context: int
    decode_tok_s: float | None
    prefill_tok_s: float | None
    weights_bytes: int
    kv_bytes: int
    memory_bytes: int
    source: str = "estimated"

    def as_dict(self) -> dict[str, Any]:
        return {
            "quant": self.quant, "context": self.context,
            "decode_tok_s": None if self.decode_tok_s is None else round(self.decode_tok_s, 1),
            "prefill_tok_s": None if self.prefill_tok_s is None else round(self.prefill_tok_s),
            "weights_bytes": self.weights_bytes, "kv_bytes": self.kv_bytes,
            "memory_bytes": self.memory_bytes, "source": self.source,
        }


def weights_bytes(entry: CatalogEntry, quant: str, *, active: bool = False) -> int:
    """Bytes of the (active) weights at ``quant`` (MLX group-64 scales included)."""
    params = entry.active_params_b if active else entry.params_b
    return int(params * 1e9 * QUANT_BITS[quant] / 8)


def kv_bytes(entry: CatalogEntry, context: int) -> int:
    """KV cache bytes for ``context`` tokens. Sliding-window layers hold at most the
    window; without a recorded shape, 18 KB per token per billion params (Qwen3-8B's
    ratio), a quarter of that for hybrid attention (few full-attention layers)."""
    context = max(0, min(context, entry.context_length))
    kv = entry.kv_cache
    if kv is None:
        per_token = 18_000 * entry.active_params_b
        if entry.attention.startswith("hybrid"):
            per_token /= 4
        return int(per_token * context)
    per_layer = 2 * kv.kv_heads * kv.head_dim * KV_BYTES
    full = kv.layers if kv.full_attention_layers is None else kv.full_attention_layers
    local = kv.layers - full
    window = min(context, kv.sliding_window or context)
    return per_layer * (full * context + local * window)


def memory_bytes(entry: CatalogEntry, quant: str, context: int = DEFAULT_CONTEXT,
                 *, server: bool = True) -> int:
    """Unified memory one tier needs: weights + KV + activations (+ its server process)."""
    weights = weights_bytes(entry, quant)
    peak = weights * (1 + ACTIVATION_SHARE) + ACTIVATION_FIXED + kv_bytes(entry, context)
    return int(peak + (SERVER_PROCESS if server else 0))


def decode_tok_s(entry: CatalogEntry, quant: str, hw: HardwareProfile,
                 context: int = DEFAULT_CONTEXT) -> float | None:
    """Generated tokens per second for one request, or None without a bandwidth."""
    if not hw.bandwidth_gbs:
        return None
    read = weights_bytes(entry, quant, active=True) + kv_bytes(entry, context)
    share = ULTRA_BANDWIDTH_SHARE if chip_tier(hw.chip) == "Ultra" else 1.0
    seconds = read / (EFFICIENCY * share * hw.bandwidth_gbs * 1e9) + FIXED_MS / 1000
    cores = hw.gpu_cores or CALIBRATION_GPU_CORES
    compute_ms = 0.0
    if entry.attention == "hybrid-linear":
        compute_ms += HYBRID_MS * entry.active_params_b
    if entry.is_moe:
        compute_ms += MOE_MS * entry.params_b
    seconds += compute_ms / cores / 1000
    return 1 / seconds


def prefill_tok_s(entry: CatalogEntry, hw: HardwareProfile) -> float | None:
    """Prompt tokens per second, or None without an Apple GPU."""
    if hw.kind == "cpu" or not hw.gpu_cores:
        return None
    gen = chip_generation(hw.chip) or max(PREFILL_PER_CORE)
    per_core = PREFILL_PER_CORE.get(min(gen, max(PREFILL_PER_CORE)), PREFILL_PER_CORE[1])
    seconds = entry.active_params_b / (per_core * hw.gpu_cores) + PREFILL_FIXED_US / 1e6
    return 1 / seconds


def estimate(entry: CatalogEntry, quant: str, hw: HardwareProfile,
             context: int = DEFAULT_CONTEXT) -> Estimate:
    """Every estimate for one model at one quantization and context on ``hw``."""
    if quant not in entry.repos:
        raise ValueError(f"{entry.id} has no {quant} repo")
    return Estimate(
        model_id=entry.id, quant=quant, context=context,
        decode_tok_s=decode_tok_s(entry, quant, hw, context),
        prefill_tok_s=prefill_tok_s(entry, hw),
        weights_bytes=weights_bytes(entry, quant),
        kv_bytes=kv_bytes(entry, context),
        memory_bytes=memory_bytes(entry, quant, context),
    )
