"""Estimator accuracy: predicted vs published MLX decode speed, leave one chip out.

Data (every row names its source): benchmarks/data/mlx-measured-decode.csv (M4 Pro,
M5 Max; mlx_transformers_benchmark) and benchmarks/data/mlx-published-decode.csv (M1 Max,
M2 Pro, M2 Max, M3 Pro, M3 Ultra, M4 Max, M4 Pro; Rapid-MLX community submissions,
mlx-lm's BENCHMARKS.md, vllm-mlx issues), each run at a stated context.

Leave-one-chip-out: for every chip, the decode constants (core.estimator.DecodeModel)
are fitted on the runs of the *other* chips and that chip's runs are predicted, so every
error below is on a chip the constants never saw. Targets: median absolute error <= 12%
over all runs, and <= 20% within every class (sub-1B, 1-4B, dense >= 7B, MoE, hybrid).
The in-sample error of the shipped constants, the prefill and memory errors and the
llama.cpp LLaMA-2-7B table (another runtime, no target) are printed for reference.

    python benchmarks/estimator.py           # table, PASS/FAIL, benchmarks/results/estimator.json
    python benchmarks/estimator.py --fit     # also print the constants fitted on every run
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mlx_stack.core.catalog import Capabilities, CatalogEntry, KvCache, RepoRef
from mlx_stack.core.estimator import DECODE, DecodeModel, decode_tok_s, memory_bytes, prefill_tok_s
from mlx_stack.services.catalog_store import load_catalog
from mlx_stack.services.hardware import Plan, plan_profile

HERE = Path(__file__).parent
DATA = HERE / "data"
TARGET = 0.12
CLASS_TARGET = 0.20
CLASSES = ("sub-1B", "1-4B", "dense >= 7B", "MoE", "hybrid")
SHARED_CONTEXT = 256  # mlx_transformers_benchmark does not state its prompt; short prompts assumed
QUANTS = {"4bit": "int4", "4bits": "int4", "6bit": "int6", "8bit": "int8", "bf16": "bf16"}
# shared/data/README.md: "A few rows are odd (bf16 on the M5 Max)": slower than on the M4 Pro
# with half its bandwidth. Left out of every figure, listed in the JSON.
ODD_BF16 = "odd bf16 row: slower than on the M4 Pro with half the bandwidth (shared/data/README.md)"
# The 2026-04 runs of Qwen3.5-35B-A3B are contradicted by later runs of the same repo: 58.5 tok/s
# on an M2 Pro (200 GB/s, Rapid-MLX 2026-08) against 25.4 on an M4 Pro (273 GB/s); the issue's
# published measurements also put this model 2-4x above the old figure (an early MLX path).
STALE_MOE = "superseded: the same repo runs 58.5 tok/s on an M2 Pro (200 GB/s) in 2026-08 data"
OUTLIERS = {("mlx-community/Qwen3.5-2B-bf16", "M5 Max"): ODD_BF16,
            ("mlx-community/Qwen3.5-4B-bf16", "M5 Max"): ODD_BF16,
            ("mlx-community/Qwen3.5-9B-bf16", "M5 Max"): ODD_BF16,
            ("mlx-community/Qwen3.5-27B-bf16", "M5 Max"): ODD_BF16,
            ("mlx-community/Qwen3.5-35B-A3B-4bit", "M4 Pro"): STALE_MOE,
            ("mlx-community/Qwen3.5-35B-A3B-8bit", "M4 Pro"): STALE_MOE,
            ("mlx-community/Qwen3.5-35B-A3B-4bit", "M5 Max"): STALE_MOE,
            ("mlx-community/Qwen3.5-35B-A3B-8bit", "M5 Max"): STALE_MOE}
# A published run left out, with the reason (matched on repo, chip, context).
PUBLISHED_OUTLIERS = {("mlx-community/Qwen3.5-35B-A3B-4bit", "M2 Pro", 8160):
                      "22 GB model on a 32 GB Mac: 2.8x slower at 8k than short, memory pressure "
                      "(the same run aborted Qwen3.6-35B-A3B for swapping)"}
FIELDS = ("efficiency", "ultra_share", "fixed_ms", "moe_ms", "hybrid_ms", "kv_factor", "gen_speedup")


@dataclass
class Run:
    model_id: str
    quant: str
    repo: str
    chip: str
    gpu_cores: int | None
    memory_gb: float
    context: int
    measured: float
    source: str
    prefill_measured: float | None = None
    memory_measured_gib: float | None = None

    @property
    def label(self) -> str:
        return self.chip + (f" {self.gpu_cores}c" if self.gpu_cores else "")


def class_of(entry: CatalogEntry) -> str:
    if entry.is_moe:
        return "MoE"
    if entry.attention.startswith("hybrid"):
        return "hybrid"
    if entry.params_b < 1.0:
        return "sub-1B"
    return "1-4B" if entry.params_b <= 4.5 else "dense >= 7B"


def load_runs() -> tuple[list[Run], list[dict]]:
    catalog = load_catalog()
    runs, left_out = [], []
    with (DATA / "mlx-measured-decode.csv").open() as fh:
        for row in csv.DictReader(fh):
            hit = catalog.find_repo(row["hf_repo"])
            if hit is None:
                continue
            reason = OUTLIERS.get((row["hf_repo"], row["chip"]))
            if reason:
                left_out.append({"repo": row["hf_repo"], "chip": row["chip"], "reason": reason})
                continue
            runs.append(Run(hit[0].id, hit[1], row["hf_repo"], row["chip"],
                            int(row["gpu_cores"]) if row["gpu_cores"] else None, float(row["memory_gb"]),
                            SHARED_CONTEXT, float(row["gen_tok_s"]),
                            "mlx_transformers_benchmark (2026-04-02), shared/data/mlx-measured-decode.csv",
                            float(row["prompt_tok_s"]), float(row["peak_memory_gib"])))
    with (DATA / "mlx-published-decode.csv").open() as fh:
        for row in csv.DictReader(fh):
            catalog.get(row["model_id"])  # every published run belongs to a catalog model
            reason = PUBLISHED_OUTLIERS.get((row["repo"], row["chip"], int(row["context"])))
            if reason:
                left_out.append({"repo": row["repo"], "chip": row["chip"], "reason": reason})
                continue
            runs.append(Run(row["model_id"], row["quant"], row["repo"], row["chip"],
                            int(row["gpu_cores"]) if row["gpu_cores"] else None, float(row["memory_gb"]),
                            int(row["context"]), float(row["decode_tok_s"]),
                            f"{row['source']} ({row['date']})"))
    return runs, left_out


def _profiles(runs: list[Run]) -> dict[tuple[str, int | None, float], object]:
    return {(r.chip, r.gpu_cores, r.memory_gb): plan_profile(Plan(r.chip, r.gpu_cores, r.memory_gb))
            for r in runs}


def predict(run: Run, model: DecodeModel, hw: object) -> float:
    entry = load_catalog().get(run.model_id)
    got = decode_tok_s(entry, run.quant, hw, run.context, model)  # type: ignore[arg-type]
    assert got is not None
    return got


def _loss(model: DecodeModel, runs: list[Run], hws: dict) -> float:
    """Mean squared log error: errors on fast and slow models weigh alike."""
    total = 0.0
    for r in runs:
        total += math.log(predict(r, model, hws[(r.chip, r.gpu_cores, r.memory_gb)]) / r.measured) ** 2
    return total / len(runs)


_BOUNDS = {"efficiency": (0.3, 1.0), "ultra_share": (0.3, 1.0), "fixed_ms": (0.0, 10.0),
           "moe_ms": (0.0, 30.0), "hybrid_ms": (0.0, 30.0), "kv_factor": (0.0, 20.0),
           "gen_speedup": (0.8, 2.0)}


def llamacpp_ultra_share() -> float:
    """Ultra's bandwidth share relative to the other chips in llama.cpp's table (Q8_0): the
    prior for ``ultra_share`` when no Ultra run is in the fit (another runtime, same chips)."""
    ultra, other = [], []
    with (DATA / "llamacpp-apple-silicon-decode.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["quant"] == "Q8_0":
                eff = float(row["model_file_gb"]) * float(row["tg128_tok_s"]) / float(row["bandwidth_gbs"])
                (ultra if row["chip"].endswith("Ultra") else other).append(eff)
    return statistics.median(ultra) / statistics.median(other)


# Where every fit starts: physical round numbers, not the shipped constants (which saw every chip).
NEUTRAL = DecodeModel(efficiency=0.8, ultra_share=0.8, fixed_ms=1.0, moe_ms=1.0, hybrid_ms=1.0,
                      kv_factor=1.0, gen_speedup=1.0)


def fit(runs: list[Run], hws: dict, start: DecodeModel = NEUTRAL, rounds: int = 6) -> DecodeModel:
    """Coordinate descent with shrinking steps, inside physical bounds (deterministic)."""
    best = start
    if not any(r.chip.endswith("Ultra") for r in runs):
        best = replace(best, ultra_share=llamacpp_ultra_share())
    best_loss = _loss(best, runs, hws)
    step = {k: (hi - lo) / 4 for k, (lo, hi) in _BOUNDS.items()}
    if not any(r.chip.endswith("Ultra") for r in runs):
        step["ultra_share"] = 0.0  # nothing to fit it on: keep the start value
    for _ in range(rounds):
        for _ in range(6):
            improved = False
            for name in FIELDS:
                if not step[name]:
                    continue
                for direction in (1, -1):
                    lo, hi = _BOUNDS[name]
                    value = min(hi, max(lo, getattr(best, name) + direction * step[name]))
                    trial = replace(best, **{name: value})
                    loss = _loss(trial, runs, hws)
                    if loss < best_loss - 1e-12:
                        best, best_loss, improved = trial, loss, True
            if not improved:
                break
        step = {k: v / 3 for k, v in step.items()}
    return best


def _pct(pred: float, real: float) -> float:
    return abs(pred - real) / real


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def loco(runs: list[Run], hws: dict) -> tuple[list[dict], dict[str, DecodeModel]]:
    """Leave one chip out: predict every chip with constants fitted on the others."""
    catalog = load_catalog()
    rows, models = [], {}
    for chip in sorted({r.chip for r in runs}):
        train = [r for r in runs if r.chip != chip]
        model = fit(train, hws)
        models[chip] = model
        for r in (r for r in runs if r.chip == chip):
            pred = predict(r, model, hws[(r.chip, r.gpu_cores, r.memory_gb)])
            rows.append({"chip": r.label, "model": r.model_id, "quant": r.quant, "context": r.context,
                         "class": class_of(catalog.get(r.model_id)), "measured": r.measured,
                         "predicted": round(pred, 1), "error": round(_pct(pred, r.measured), 4),
                         "source": r.source})
    return rows, models


def in_sample(runs: list[Run], hws: dict) -> list[dict]:
    out = []
    for r in runs:
        hw = hws[(r.chip, r.gpu_cores, r.memory_gb)]
        entry = load_catalog().get(r.model_id)
        row = {"chip": r.label, "model": r.model_id, "error": _pct(predict(r, DECODE, hw), r.measured)}
        if r.prefill_measured:
            pre = prefill_tok_s(entry, hw)  # type: ignore[arg-type]
            row["prefill_error"] = None if pre is None else _pct(pre, r.prefill_measured)
        if r.memory_measured_gib:
            mem = memory_bytes(entry, r.quant, r.context, server=False) / 1024**3
            row["memory_error"] = _pct(mem, r.memory_measured_gib)
        out.append(row)
    return out


def llama2_entry() -> CatalogEntry:
    """LLaMA-2-7B as the llama.cpp table ran it (6.74B params, 32 layers, MHA)."""
    return CatalogEntry(
        id="llama-2-7b", name="LLaMA-2-7B", family="llama", publisher="Meta", architecture="dense",
        attention="full", params_b=6.74, active_params_b=6.74, context_length=4096, gated=True,
        license="llama2", tags=(), capabilities=Capabilities(False, None, None, False),
        repos={q: RepoRef(q, "n/a", 0.0) for q in ("int4", "int8", "bf16")},
        kv_cache=KvCache(32, 32, 128),
    )


def llamacpp_error() -> float | None:
    entry, quants = llama2_entry(), {"Q4_0": "int4", "Q8_0": "int8", "F16": "bf16"}
    errs = []
    with (DATA / "llamacpp-apple-silicon-decode.csv").open() as fh:
        for row in csv.DictReader(fh):
            hw = plan_profile(Plan(row["chip"], int(row["gpu_cores"]), 64, float(row["bandwidth_gbs"])))
            pred = decode_tok_s(entry, quants[row["quant"]], hw, 128)
            if pred is not None:
                errs.append(_pct(pred, float(row["tg128_tok_s"])))
    return _median(errs)


def _fmt(v: float | None) -> str:
    return "   n/a" if v is None else f"{100 * v:5.1f}%"


def summarize(rows: list[dict], key: str) -> dict[str, dict]:
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r["error"])
    return {k: {"runs": len(v), "median_error": _median(v)} for k, v in sorted(groups.items())}


def main(argv: list[str]) -> int:
    runs, left_out = load_runs()
    hws = _profiles(runs)
    rows, models = loco(runs, hws)
    by_chip, by_class = summarize(rows, "chip"), summarize(rows, "class")
    overall = _median([r["error"] for r in rows])
    print(f"Decode speed, leave-one-chip-out ({len(rows)} runs, {len({r.chip for r in runs})} chips; "
          "median absolute error of predictions for a chip left out of the fit)")
    print(f"  {'chip':<16}{'runs':>5}{'error':>9}   {'class':<13}{'runs':>5}{'error':>9}")
    left = list(by_chip.items())
    right = [(c, by_class.get(c, {"runs": 0, "median_error": None})) for c in CLASSES]
    for i in range(max(len(left), len(right))):
        a = " " * 32
        if i < len(left):
            a = f"  {left[i][0]:<16}{left[i][1]['runs']:>5}{_fmt(left[i][1]['median_error']):>9}"
        b = f"   {right[i][0]:<13}{right[i][1]['runs']:>5}{_fmt(right[i][1]['median_error']):>9}" \
            if i < len(right) else ""
        print(a + b)
    print()
    print("  worst predictions (chip left out):")
    for r in sorted(rows, key=lambda r: -r["error"])[:8]:
        print(f"    {r['chip']:<14}{r['model']:<30}{r['quant']:<5} ctx {r['context']:>5}  "
              f"measured {r['measured']:>6.1f}  predicted {r['predicted']:>6.1f}  "
              f"({_fmt(r['error']).strip()})")
    ins = in_sample(runs, hws)
    ins_dec = _median([r["error"] for r in ins])
    pre = _median([r["prefill_error"] for r in ins if r.get("prefill_error") is not None])
    mem = _median([r["memory_error"] for r in ins if "memory_error" in r])
    cpp = llamacpp_error()
    print()
    print(f"  shipped constants {asdict(DECODE)}")
    print(f"  in-sample decode error {_fmt(ins_dec).strip()}, prefill {_fmt(pre).strip()}, "
          f"memory {_fmt(mem).strip()}; llama.cpp LLaMA-2-7B table (other runtime) {_fmt(cpp).strip()}")
    if "--fit" in argv:
        print(f"  fitted on every run: {asdict(fit(runs, hws))}")
    print()
    results = {"overall": (overall, TARGET)}
    results.update({f"class {c}": (by_class[c]["median_error"], CLASS_TARGET)
                    for c in CLASSES if c in by_class})
    passed = True
    for name, (value, target) in results.items():
        ok = value is not None and value <= target
        passed &= ok
        print(f"leave-one-chip-out decode error {name}: {_fmt(value).strip()} (target <= {target:.0%}): "
              f"{'PASS' if ok else 'FAIL'}")
    missing = [c for c in CLASSES if c not in by_class]
    for c in missing:
        print(f"leave-one-chip-out decode error class {c}: no runs: FAIL")
        passed = False
    out = HERE / "results" / "estimator.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "target": TARGET, "class_target": CLASS_TARGET, "pass": passed, "overall": overall,
        "by_chip": by_chip, "by_class": by_class, "constants": asdict(DECODE),
        "loco_constants": {k: asdict(v) for k, v in models.items()},
        "in_sample": {"decode": ins_dec, "prefill": pre, "memory": mem}, "llamacpp_llama2_7b": cpp,
        "left_out": left_out, "runs": rows}, indent=2))
    print(f"wrote {out.relative_to(HERE.parent)}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
