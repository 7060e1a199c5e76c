"""Estimator accuracy: predicted vs measured decode speed (and prefill, memory).

Primary check: every MLX run in benchmarks/data/mlx-measured-decode.csv whose repo is in
the catalog; per chip and overall median absolute percentage error. Target: overall
decode <= 15%. The constants were fitted on these same runs, so this is an in-sample
error; the llama.cpp table (LLaMA-2-7B on 28 chip variants, a different runtime) is
printed as an out-of-sample sanity check, without a target.

Prints a table; writes JSON to benchmarks/results/estimator.json.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

from mlx_stack.core.catalog import Capabilities, CatalogEntry, KvCache, RepoRef, load_catalog
from mlx_stack.core.estimator import decode_tok_s, memory_bytes, prefill_tok_s
from mlx_stack.services.hardware import Plan, plan_profile

HERE = Path(__file__).parent
DATA = HERE / "data"
TARGET = 0.15
CONTEXT = 256  # the runs used short prompts; KV is a small share of bytes read


def _pct(pred: float | None, real: float) -> float | None:
    return None if pred is None else abs(pred - real) / real


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def mlx_rows() -> list[dict]:
    catalog = load_catalog()
    out = []
    with (DATA / "mlx-measured-decode.csv").open() as fh:
        for row in csv.DictReader(fh):
            hit = catalog.find_repo(row["hf_repo"])
            if hit is None:
                continue
            entry, quant = hit
            cores = int(row["gpu_cores"]) if row["gpu_cores"] else None
            hw = plan_profile(Plan(row["chip"], cores, float(row["memory_gb"])))
            real = float(row["gen_tok_s"])
            out.append({
                "chip": row["chip"], "repo": row["hf_repo"], "quant": quant,
                "measured": real, "predicted": decode_tok_s(entry, quant, hw, CONTEXT),
                "prefill_measured": float(row["prompt_tok_s"]), "prefill_predicted": prefill_tok_s(entry, hw),
                "memory_measured_gib": float(row["peak_memory_gib"]),
                "memory_predicted_gib": memory_bytes(entry, quant, CONTEXT, server=False) / 1024**3,
            })
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


def llamacpp_rows() -> list[dict]:
    entry, quants = llama2_entry(), {"Q4_0": "int4", "Q8_0": "int8", "F16": "bf16"}
    out = []
    with (DATA / "llamacpp-apple-silicon-decode.csv").open() as fh:
        for row in csv.DictReader(fh):
            hw = plan_profile(Plan(row["chip"], int(row["gpu_cores"]), 64, float(row["bandwidth_gbs"])))
            quant = quants[row["quant"]]
            out.append({"chip": f"{row['chip']} {row['gpu_cores']}c", "quant": row["quant"],
                        "measured": float(row["tg128_tok_s"]),
                        "predicted": decode_tok_s(entry, quant, hw, 128),
                        "prefill_measured": float(row["pp512_tok_s"]),
                        "prefill_predicted": prefill_tok_s(entry, hw)})
    return out


def summarize(rows: list[dict], key: str = "chip") -> dict:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r)
    def stats(rs: list[dict]) -> dict:
        dec = [e for r in rs if (e := _pct(r["predicted"], r["measured"])) is not None]
        pre = [e for r in rs if (e := _pct(r["prefill_predicted"], r["prefill_measured"])) is not None]
        mem = [abs(r["memory_predicted_gib"] - r["memory_measured_gib"]) / r["memory_measured_gib"]
               for r in rs if "memory_measured_gib" in r]
        return {"runs": len(rs), "decode_mape": _median(dec), "prefill_mape": _median(pre),
                "memory_mape": _median(mem)}
    return {"by_chip": {k: stats(v) for k, v in groups.items()}, "overall": stats(rows)}


def _fmt(v: float | None) -> str:
    return "   n/a" if v is None else f"{100 * v:5.1f}%"


def _print(title: str, summary: dict) -> None:
    print(title)
    print(f"  {'chip':<16}{'runs':>5}{'decode':>9}{'prefill':>9}{'memory':>9}")
    for chip, s in [*summary["by_chip"].items(), ("OVERALL", summary["overall"])]:
        print(f"  {chip:<16}{s['runs']:>5}{_fmt(s['decode_mape']):>9}{_fmt(s['prefill_mape']):>9}"
              f"{_fmt(s['memory_mape']):>9}")


def main() -> int:
    mlx = mlx_rows()
    mlx_summary = summarize(mlx)
    cpp_summary = summarize(llamacpp_rows())
    _print("MLX runs (median absolute % error, predicted vs measured; in-sample calibration)", mlx_summary)
    print()
    _print("llama.cpp LLaMA-2-7B runs (out-of-sample sanity check, different runtime)", cpp_summary)
    overall = mlx_summary["overall"]["decode_mape"]
    passed = overall is not None and overall <= TARGET
    print(f"\noverall MLX decode error {_fmt(overall).strip()} (target <= {TARGET:.0%}): "
          f"{'PASS' if passed else 'FAIL'}")
    out = HERE / "results" / "estimator.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"target": TARGET, "pass": passed, "context": CONTEXT,
                               "mlx": mlx_summary, "llamacpp": cpp_summary, "mlx_runs": mlx}, indent=2))
    print(f"wrote {out.relative_to(HERE.parent)}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
