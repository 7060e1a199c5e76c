"""Speed and memory estimates for a catalog model on a hardware profile (pure).

Decode is bound by memory bandwidth. Time per generated token at ``context`` tokens:

    t = (active_weight_bytes + kv_factor x kv_bytes(context)) / (efficiency x share x bandwidth)
        + (fixed_ms + moe_ms [mixture of experts] + hybrid_ms [linear-attention/Mamba layers])
          x gen_speedup ^ (4 - chip generation)

(the fields of ``DecodeModel``; ``DECODE`` holds the fitted values)

- dense: the weights at the quantization's bits per weight, read once per token;
- mixture of experts: only the *active* parameters are read; routing and the expert
  gather add a fixed moe_ms per token (it does not grow with the total parameters);
- hybrid attention (Gated DeltaNet, Mamba): the recurrent layers add hybrid_ms per
  token; only the full-attention layers keep a KV cache;
- sub-1B models: the fixed per-token cost (kernel launches, sampling, the server loop)
  is most of the time, so fixed_ms sets their speed, not the bandwidth;
- ``share`` is ultra_share on Ultra chips (two dies), 1 elsewhere; the KV cache is read
  at kv_factor x its size (attention kernels reach less bandwidth than the weight GEMVs);
- the per-token costs are an M4's; each chip generation changes them by gen_speedup (an
  M2 spends gen_speedup^2 times an M4's time on them), an unknown chip counts as an M4.

Every speed has a context: ``decode_tok_s`` at SHORT_CONTEXT tokens (a short chat
turn, like the published runs) and ``decode_full_tok_s`` at the tier's full context.

The constants are fitted (benchmarks/estimator.py --fit) on published MLX measurements
in benchmarks/data/ (8 chips, M1 Max to M5 Max, each row with its source); the benchmark
reports the error leave-one-chip-out: every chip predicted by constants fitted without it.

Prefill is compute bound: tok/s = PREFILL_PER_CORE[generation] x gpu_cores / active_B,
from llama.cpp's Apple Silicon table (M1-M4, pp512) and the MLX runs (M4 Pro, M5 Max).

Memory = weights + KV cache at the context + activations (0.9 GB + 16% of weights, fitted
on the MLX peak memory) + one vllm-mlx server process (about 1 GB, measured).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlx_stack.core.catalog import QUANT_BITS, CatalogEntry
from mlx_stack.core.chips import chip_generation, chip_tier
from mlx_stack.core.hardware import HardwareProfile


@dataclass(frozen=True)
class DecodeModel:
    """The decode-time constants (see the module docstring); fitted by benchmarks/estimator.py."""

    efficiency: float  # share of the rated bandwidth a decode step reaches
    ultra_share: float  # extra share on Ultra chips (two dies)
    fixed_ms: float  # per-token cost of every model
    moe_ms: float  # per-token routing/gather cost of a mixture of experts
    hybrid_ms: float  # per-token cost of linear-attention / Mamba layers
    kv_factor: float  # KV bytes cost this many weight bytes
    gen_speedup: float  # per-token costs shrink by this factor per chip generation (M4 = 1)


# Fitted on every run in benchmarks/data/ (benchmarks/estimator.py --fit: 135 runs on 8 chips,
# 2026-12-02); its leave-one-chip-out error is what benchmarks/estimator.py reports.
DECODE = DecodeModel(efficiency=0.878, ultra_share=0.845, fixed_ms=1.42, moe_ms=2.58, hybrid_ms=0.93,
                     kv_factor=1.97, gen_speedup=1.24)
REFERENCE_GENERATION = 4  # per-token costs are stated for an M4
SHORT_CONTEXT = 512  # tokens: the context of the short-prompt decode figure
# prefill: tok/s x billion active params per GPU core, by chip generation (batch 512),
# plus a fixed time per prompt token (fitted on 0.5B-14B models)
PREFILL_PER_CORE = {1: 113.0, 2: 123.0, 3: 130.0, 4: 165.0, 5: 500.0}
PREFILL_FIXED_US = 30.0
ACTIVATION_FIXED = 0.9e9
ACTIVATION_SHARE = 0.16
SERVER_PROCESS = 1.0e9  # RSS of one vllm-mlx server (shared/design/verified-facts.md)
KV_BYTES = 2  # fp16 K and V
DEFAULT_CONTEXT = 8192


@dataclass(frozen=True)
class Estimate:
    """One model at one quantization on one machine. ``decode_tok_s`` is the decode speed
    at ``short_context`` tokens, ``decode_full_tok_s`` at ``context`` (the tier's full
    window, which memory is reserved for). Speeds are None when the machine's bandwidth
    (decode) or GPU (prefill) is unknown. ``source`` is ``estimated`` or ``measured``."""

    model_id: str
    quant: str
    context: int
    decode_tok_s: float | None
    prefill_tok_s: float | None
    weights_bytes: int
    kv_bytes: int
    memory_bytes: int
    source: str = "estimated"
    decode_full_tok_s: float | None = None
    short_context: int = SHORT_CONTEXT

    def as_dict(self) -> dict[str, object]:
        return {
            "quant": self.quant, "context": self.context,
            "decode_tok_s": _round(self.decode_tok_s), "decode_context": self.short_context,
            "decode_full_tok_s": _round(self.decode_full_tok_s), "decode_full_context": self.context,
            "prefill_tok_s": None if self.prefill_tok_s is None else round(self.prefill_tok_s),
            "weights_bytes": self.weights_bytes, "kv_bytes": self.kv_bytes,
            "memory_bytes": self.memory_bytes, "source": self.source,
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


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
                 context: int = SHORT_CONTEXT, model: DecodeModel = DECODE) -> float | None:
    """Generated tokens per second for one request with ``context`` tokens in its KV
    cache, or None without a bandwidth."""
    if not hw.bandwidth_gbs:
        return None
    read = weights_bytes(entry, quant, active=True) + model.kv_factor * kv_bytes(entry, context)
    share = model.ultra_share if chip_tier(hw.chip) == "Ultra" else 1.0
    seconds = read / (model.efficiency * share * hw.bandwidth_gbs * 1e9)
    fixed_ms = model.fixed_ms
    if entry.is_moe:
        fixed_ms += model.moe_ms
    if entry.attention.startswith("hybrid"):
        fixed_ms += model.hybrid_ms
    gen = chip_generation(hw.chip) or REFERENCE_GENERATION
    fixed_ms *= model.gen_speedup ** (REFERENCE_GENERATION - gen)
    return 1 / (seconds + fixed_ms / 1000)


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
    """Every estimate for one model at one quantization on ``hw``: decode at a short
    prompt and at ``context`` tokens, prefill, and memory with ``context`` tokens of KV."""
    if quant not in entry.repos:
        raise ValueError(f"{entry.id} has no {quant} repo")
    return Estimate(
        model_id=entry.id, quant=quant, context=context,
        decode_tok_s=decode_tok_s(entry, quant, hw, min(SHORT_CONTEXT, context)),
        prefill_tok_s=prefill_tok_s(entry, hw),
        weights_bytes=weights_bytes(entry, quant),
        kv_bytes=kv_bytes(entry, context),
        memory_bytes=memory_bytes(entry, quant, context),
        decode_full_tok_s=decode_tok_s(entry, quant, hw, context),
        short_context=min(SHORT_CONTEXT, context),
    )
