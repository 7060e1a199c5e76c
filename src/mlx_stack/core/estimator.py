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

Prefill is compute bound. Seconds per prompt token, for a prompt of P tokens:

    t = emul x [ quant x (2 x dense_params + moe_factor x 2 x routed_params) / F_mm
                 + (hybrid x 2 x dense_params + attn x attention_flops(P)) / F_alu ]
        + expert_bytes x used / min(P, PREFILL_CHUNK) / (efficiency x bandwidth)   (MoE only)
        + fixed_us
    F_mm  = gpu_cores x clock(gen) x mm_per_clock[gen] (x ultra_share on Ultra chips)
    F_alu = gpu_cores x clock(gen) x alu_per_clock     (x ultra_share)

- matmul_params: the active parameters less the embedding (a lookup; the output head runs
  for the last prompt token only), about VOCAB x width; dense_params = matmul_params less
  a MoE's routed_params (all of them for a dense model); the linear-attention/Mamba scans
  follow dense_params (the layers' width), not the experts;
- attention_flops(P) = 4 x d_q x (P / 2) per full-attention layer (the average token sees
  half the prompt), min(P / 2, window) per sliding-window layer; linear-attention layers
  add none (their cost is the hybrid term); d_q is estimated from the parameters;
- mixture of experts: the routed experts' FLOPs (top-k of E experts, each expert's
  weights (total - active) / (E - k); k / E = 1/16 when the catalog does not record it)
  run as gather matmuls at moe_factor x the dense cost (each expert sees only
  chunk x k / E rows), moe_factor_m12 on M1/M2 GPUs: fitted apart because their MoE runs
  (3 chips, bf16 and fp16 builds alike) cost 1.6x what M3+ runs (4 chips) do beside dense
  models; the cause is not established (the M3's GPU redesign, Dynamic Caching, is the
  likely one). The rest of the active parameters (attention, shared experts) run as
  dense matmuls. A prefill chunk of N tokens routes N x k rows, so it touches
  min(E, N x k) experts: their weights are read once per chunk, at the decode
  bandwidth efficiency (this is what makes short prompts of MoE models slower per token);
- emul = bf16_emulation on M1 and M2 GPUs for bf16 activations (mlx-community repos keep
  bf16 scales and norms, so MLX computes in bf16): those GPUs have no bf16 arithmetic and
  Metal emulates it through float32. Fitted on the M1/M2 runs (bf16 and fp16 builds) against
  the M3/M4 ones: 1.7x. Same-machine A/B runs of whole engines report less (fp16 instead of
  bf16: +34% prefill, Rapid-MLX issue 3154; ~+20%, oMLX issue 604; both M2 Max), the
  starting value of the fit (held there, the leave-one-chip-out error was 23% when tried);
- quantized weights cost quant_factor (dequantization);
- mm_per_clock is one fitted value for M1 to M4 (llama.cpp's F16 pp512 per core per clock
  is flat across them) and another for the M5 (its GPU neural accelerators); the attention
  and scan kernels run on the ALUs, so their F_alu is the same on every generation; without
  an M5 in the fit, the M5's is its peak (PEAK_PER_CLOCK) x the M1-M4 efficiency;
- ``PREFILL`` holds the fitted values (benchmarks/estimator.py --fit: published MLX
  prefill runs in benchmarks/data/, each with its source).

Time to first token = P x t(P) (``ttft_s``); with a prefix-cache hit only the new tokens
are computed, each attending to the whole prompt (``ttft_cached_s``).

Memory (``memory_bytes``) = weights x (1 + MEMORY.share) + MEMORY.fixed + KV cache at the
context + prefill activations (MEMORY.per_token x width per token of one PREFILL_CHUNK)
+ one vllm-mlx server process (about 1 GB, measured); fitted on published MLX peak memory.
"""

from __future__ import annotations

import math
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

@dataclass(frozen=True)
class PrefillModel:
    """The prompt-processing constants (see the module docstring); fitted by benchmarks/estimator.py."""

    mm_per_clock: tuple[float, ...]  # matmul FLOPs per GPU core per clock, M1..M5 (0: not fitted)
    alu_per_clock: float  # FLOPs per core per clock of the attention and scan kernels
    ultra_share: float  # share of the two dies an Ultra reaches
    moe_factor: float  # a routed expert's FLOPs (gather matmul) cost this many dense FLOPs
    hybrid: float  # linear-attention / Mamba scans: this many x 2 x dense_params ALU FLOPs
    quant_factor: float  # quantized weights cost this many bf16 FLOPs (dequantization)
    attn: float  # attention FLOPs cost this many ALU FLOPs
    fixed_us: float  # per prompt token, every model
    bf16_emulation: float = 1.3  # M1/M2: bf16 activations cost this many times (fitted; 1.3: the A/B prior)
    moe_factor_m12: float = 0.0  # moe_factor on M1/M2 GPUs (0: the same as moe_factor)


# GPU clock (GHz) per chip generation, approximate public figures: with them llama.cpp's
# F16 pp512 per core per clock is flat from M1 to M4 (14.1-14.6, benchmarks/data/
# llamacpp-apple-silicon-decode.csv), as the ALUs' peak is.
GPU_CLOCK_GHZ = {1: 1.28, 2: 1.40, 3: 1.38, 4: 1.58, 5: 1.60}
# Peak matmul FLOPs per core per clock: 128 FP32 lanes x 2 (FP16 at the same rate) to M4;
# the M5's per-core neural accelerators give "over 4x the peak GPU compute for AI" of the
# M4 (Apple, M5 announcement, 2025-10). A generation with no fitted factor gets its peak
# x the mean efficiency (fitted / peak, geometric) of the fitted generations.
PEAK_PER_CLOCK = {1: 256.0, 2: 256.0, 3: 256.0, 4: 256.0, 5: 1024.0}
# Fitted on every run in benchmarks/data/mlx-published-prefill.csv and the prompt speeds of
# mlx-measured-decode.csv (benchmarks/estimator.py --fit: 163 runs on 11 chips, 2026-12-07);
# its leave-one-chip-out and held-out-source errors are what benchmarks/estimator.py reports.
PREFILL = PrefillModel(mm_per_clock=(209.5, 209.5, 209.5, 209.5, 681.9), alu_per_clock=256.0,
                       ultra_share=0.965, moe_factor=1.225, hybrid=0.0875, quant_factor=1.0, attn=1.387,
                       fixed_us=41.5, bf16_emulation=1.710, moe_factor_m12=2.006)
VOCAB = 150_000  # tokens: Qwen's 152K, Llama 3's 128K (Gemma's 262K is larger)
PREFILL_CHUNK = 2048  # tokens per prefill step (mlx-lm's prefill_step_size)
DEFAULT_PROMPT_TOKENS = 16384  # a typical agent turn: system prompt, tools, history
CACHED_NEW_TOKENS = 2048  # prefix-cache hit: the last turn (a tool result or a message) is new


@dataclass(frozen=True)
class MemoryModel:
    """Activations at the peak (fitted on published MLX peak memory)."""

    fixed: float  # bytes, every model
    share: float  # x weight bytes
    per_token: float  # bytes per hidden unit per token of the prefill chunk


# Fitted on the published peak memory (benchmarks/estimator.py --fit: 111 runs, 2026-12-07).
MEMORY = MemoryModel(fixed=0.882e9, share=0.080, per_token=7.39)
# The names core.memory_plan reads for a model known by its files only (no width: the
# prefill activations of a 4,096-wide model are folded into the fixed part).
ACTIVATION_FIXED = MEMORY.fixed + MEMORY.per_token * 4096 * PREFILL_CHUNK
ACTIVATION_SHARE = MEMORY.share
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
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS  # the prompt prefill_tok_s and ttft_s are for
    ttft_s: float | None = None  # prefill of the whole prompt
    ttft_cached_s: float | None = None  # prefix-cache hit: only the last cached_new_tokens

    def as_dict(self) -> dict[str, object]:
        return {
            "quant": self.quant, "context": self.context,
            "decode_tok_s": _round(self.decode_tok_s), "decode_context": self.short_context,
            "decode_full_tok_s": _round(self.decode_full_tok_s), "decode_full_context": self.context,
            "prefill_tok_s": None if self.prefill_tok_s is None else round(self.prefill_tok_s),
            "prompt_tokens": self.prompt_tokens, "ttft_s": _round2(self.ttft_s),
            "ttft_cached_s": _round2(self.ttft_cached_s),
            "cached_new_tokens": min(CACHED_NEW_TOKENS, self.prompt_tokens),
            "weights_bytes": self.weights_bytes, "kv_bytes": self.kv_bytes,
            "memory_bytes": self.memory_bytes, "source": self.source,
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def _round2(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


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


def _layers(entry: CatalogEntry) -> int:
    if entry.kv_cache is not None:
        return entry.kv_cache.layers
    if entry.shape is not None and entry.shape.layers:
        return entry.shape.layers
    return 32


def hidden_size(entry: CatalogEntry) -> float:
    """The model width, estimated from the active parameters (about 12 x layers x d^2)."""
    return math.sqrt(entry.active_params_b * 1e9 / (12 * _layers(entry)))


def _attention_layers(entry: CatalogEntry) -> tuple[int, int, int | None]:
    """(full-attention layers, sliding-window layers, window). Without a recorded layout:
    a quarter full for linear-attention hybrids, an eighth for Mamba hybrids, a sixth
    full with a 1,024-token window for sliding-window models (Gemma's 5:1)."""
    layers, kv = _layers(entry), entry.kv_cache
    if kv is not None and (kv.full_attention_layers is not None or not entry.attention.startswith("hybrid")):
        full = kv.layers if kv.full_attention_layers is None else kv.full_attention_layers
        return full, kv.layers - full, kv.sliding_window
    if entry.shape is not None and entry.shape.full_attention_layers is not None:
        full = entry.shape.full_attention_layers
        local = 0 if entry.attention.startswith("hybrid") else layers - full
        return full, local, 1024 if local else None
    if entry.attention == "hybrid-linear":
        return max(1, layers // 4), 0, None
    if entry.attention == "hybrid-mamba":
        return max(1, layers // 8), 0, None
    if entry.attention == "sliding-window":
        return max(1, layers // 6), layers - max(1, layers // 6), 1024
    return layers, 0, None


def matmul_params(entry: CatalogEntry) -> float:
    """Active parameters that a prompt token multiplies: the input embedding is a lookup and
    the output head runs for the last token only (mlx-lm), so neither counts; estimated as
    VOCAB x width, at most half of the active parameters."""
    active = entry.active_params_b * 1e9
    return max(active / 2, active - VOCAB * hidden_size(entry))


DEFAULT_EXPERT_SHARE = 1 / 16  # k / E when the catalog has no layout (Qwen3-30B-A3B: 8 of 128)


def _expert_share(entry: CatalogEntry) -> float:
    """k / E: the share of the experts each token is routed to."""
    shape = entry.shape
    if shape is not None and shape.experts and shape.experts_active and shape.experts > shape.experts_active:
        return shape.experts_active / shape.experts
    return DEFAULT_EXPERT_SHARE


def routed_params(entry: CatalogEntry) -> float:
    """Active parameters in the routed experts of a mixture of experts (0 for a dense model):
    k x one expert's weights, with (total - active) = (E - k) experts' weights."""
    if not entry.is_moe or entry.params_b <= entry.active_params_b:
        return 0.0
    share = _expert_share(entry)
    routed = (entry.params_b - entry.active_params_b) * 1e9 * share / (1 - share)
    return min(routed, 0.9 * matmul_params(entry))


def expert_fraction_used(entry: CatalogEntry, rows: float) -> float:
    """Share of the experts a prefill step of ``rows`` tokens routes any token to."""
    return min(1.0, rows * _expert_share(entry))


def attention_flops(entry: CatalogEntry, seen: float) -> float:
    """QK^T and AV FLOPs of one prompt token that attends to ``seen`` earlier tokens."""
    full, local, window = _attention_layers(entry)
    span_local = min(seen, window or seen)
    return 4 * hidden_size(entry) * (full * seen + local * span_local)


@dataclass(frozen=True)
class _Gpu:
    mm: float  # matmul FLOP/s
    alu: float  # attention / scan FLOP/s
    bandwidth: float  # bytes/s reached by weight reads
    emulated_bf16: bool  # no bf16 arithmetic (M1, M2)


EMULATED_BF16_GENERATIONS = (1, 2)


def _throughput(hw: HardwareProfile, model: PrefillModel) -> _Gpu | None:
    """The GPU's matmul and ALU FLOP/s and weight-read bandwidth, or None without one."""
    if hw.kind == "cpu" or not hw.gpu_cores:
        return None
    fitted = [g for g, v in enumerate(model.mm_per_clock, 1) if v > 0]
    gen = chip_generation(hw.chip) or max(fitted)
    gen = min(gen, max(GPU_CLOCK_GHZ))
    if model.mm_per_clock[gen - 1] > 0:
        mm = model.mm_per_clock[gen - 1]
    else:
        logs = [math.log(model.mm_per_clock[g - 1] / PEAK_PER_CLOCK[g]) for g in fitted]
        mm = PEAK_PER_CLOCK[gen] * math.exp(sum(logs) / len(logs))
    share = model.ultra_share if chip_tier(hw.chip) == "Ultra" else 1.0
    cores = hw.gpu_cores * GPU_CLOCK_GHZ[gen] * 1e9 * share
    bandwidth = DECODE.efficiency * (hw.bandwidth_gbs or 0.0) * 1e9
    return _Gpu(cores * mm, cores * model.alu_per_clock, bandwidth, gen in EMULATED_BF16_GENERATIONS)


def _token_seconds(entry: CatalogEntry, quant: str, gpu: _Gpu, seen: float, prompt_tokens: float,
                   model: PrefillModel, dtype: str) -> float:
    """Seconds of one prompt token that attends to ``seen`` tokens, in a prefill of
    ``prompt_tokens`` (the step size sets how often the experts' weights are read)."""
    all_mm = 2 * matmul_params(entry)
    routed = 2 * routed_params(entry)
    moe = model.moe_factor_m12 if gpu.emulated_bf16 and model.moe_factor_m12 else model.moe_factor
    weight = (all_mm - routed) + moe * routed
    if quant != "bf16":
        weight *= model.quant_factor
    # the scans' work follows the layers' width (the non-expert weights), not the experts
    scans = (all_mm - routed) * model.hybrid if entry.attention.startswith("hybrid") else 0.0
    compute = weight / gpu.mm + (scans + model.attn * attention_flops(entry, seen)) / gpu.alu
    if gpu.emulated_bf16 and dtype == "bf16":
        compute *= model.bf16_emulation
    read = 0.0
    if routed and gpu.bandwidth:
        rows = max(1.0, min(prompt_tokens, PREFILL_CHUNK))
        experts = weights_bytes(entry, quant) - weights_bytes(entry, quant, active=True)
        read = experts * expert_fraction_used(entry, rows) / rows / gpu.bandwidth
    return compute + read + model.fixed_us / 1e6


def prefill_tok_s(entry: CatalogEntry, hw: HardwareProfile, prompt_tokens: int = 2048,
                  quant: str = "int4", model: PrefillModel = PREFILL, *, dtype: str = "bf16") -> float | None:
    """Prompt tokens per second over a prompt of ``prompt_tokens``, or None without an Apple
    GPU. ``dtype``: the activations' type (bf16 for mlx-community repos; fp16 builds exist)."""
    gpu = _throughput(hw, model)
    if gpu is None:
        return None
    prompt = max(1, prompt_tokens)
    return 1 / _token_seconds(entry, quant, gpu, prompt / 2, prompt, model, dtype)


def ttft_s(entry: CatalogEntry, quant: str, hw: HardwareProfile, prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
           new_tokens: int | None = None, model: PrefillModel = PREFILL, *,
           dtype: str = "bf16") -> float | None:
    """Seconds to the first token of a ``prompt_tokens`` prompt (prefill; the decode step
    and the server's own latency are not counted). With ``new_tokens``, a prefix-cache hit:
    only the last ``new_tokens`` are computed, each attending to everything before it."""
    gpu = _throughput(hw, model)
    if gpu is None:
        return None
    new = prompt_tokens if new_tokens is None else min(new_tokens, prompt_tokens)
    seen = prompt_tokens - new / 2
    return new * _token_seconds(entry, quant, gpu, seen, new, model, dtype)


def memory_bytes(entry: CatalogEntry, quant: str, context: int = DEFAULT_CONTEXT,
                 *, server: bool = True, prompt_tokens: int | None = None,
                 model: MemoryModel = MEMORY) -> int:
    """Unified memory one tier needs at its peak: weights + KV cache at ``context`` +
    activations of one prefill chunk (+ its server process). ``prompt_tokens`` (the
    prefill that sets the peak) defaults to a full chunk."""
    weights = weights_bytes(entry, quant)
    chunk = min(PREFILL_CHUNK, prompt_tokens if prompt_tokens is not None else PREFILL_CHUNK)
    act = model.fixed + model.share * weights + model.per_token * hidden_size(entry) * chunk
    peak = weights + act + kv_bytes(entry, context)
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


def estimate(entry: CatalogEntry, quant: str, hw: HardwareProfile,
             context: int = DEFAULT_CONTEXT, prompt_tokens: int = DEFAULT_PROMPT_TOKENS) -> Estimate:
    """Every estimate for one model at one quantization on ``hw``: decode at a short
    prompt and at ``context`` tokens, prefill and time to first token of a
    ``prompt_tokens`` prompt (whole, and with a prefix-cache hit), and memory with
    ``context`` tokens of KV."""
    if quant not in entry.repos:
        raise ValueError(f"{entry.id} has no {quant} repo")
    return Estimate(
        model_id=entry.id, quant=quant, context=context,
        decode_tok_s=decode_tok_s(entry, quant, hw, min(SHORT_CONTEXT, context)),
        prefill_tok_s=prefill_tok_s(entry, hw, prompt_tokens, quant),
        weights_bytes=weights_bytes(entry, quant),
        kv_bytes=kv_bytes(entry, context),
        memory_bytes=memory_bytes(entry, quant, context),
        decode_full_tok_s=decode_tok_s(entry, quant, hw, context),
        short_context=min(SHORT_CONTEXT, context),
        prompt_tokens=prompt_tokens,
        ttft_s=ttft_s(entry, quant, hw, prompt_tokens),
        ttft_cached_s=ttft_s(entry, quant, hw, prompt_tokens, CACHED_NEW_TOKENS),
    )
