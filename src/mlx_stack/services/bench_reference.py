"""What a model should do on this hardware: the catalog's measurement, else the estimate.

The figures a benchmark is judged against (:class:`mlx_stack.core.bench.Reference`):
- speeds: the catalog's measured decode/prefill tokens/s on this exact chip (and GPU
  core count, when the measurement states one), else the estimator's prediction;
- memory: the catalog's measured MLX peak plus one vllm-mlx server process (the
  benchmark counts the server's whole process tree), else the estimator's memory
  for one tier (weights + KV cache at its default context + activations + server).
A model that is not in the catalog has no reference: its verdicts are N/A.
"""

from __future__ import annotations

from mlx_stack.core import bench as core
from mlx_stack.core import bench_result as results
from mlx_stack.core import estimator
from mlx_stack.core.catalog import CatalogEntry
from mlx_stack.core.hardware import GIB, HardwareProfile
from mlx_stack.services.catalog_store import load_catalog


def catalog_entry(model_id: str) -> CatalogEntry | None:
    return next((e for e in load_catalog() if e.id == model_id), None)


def catalog_for_repo(repo: str) -> tuple[str, str] | None:
    """(catalog id, quant) of the entry that ships hub repo ``repo``."""
    found = load_catalog().find_repo(repo)
    return (found[0].id, found[1]) if found else None


def _measured(entry: CatalogEntry, quant: str, hw: HardwareProfile) -> core.Reference | None:
    if hw.kind == "cpu":
        return None
    for m in entry.measured:
        if m.quant == quant and m.chip == hw.chip and (m.gpu_cores is None or m.gpu_cores == hw.gpu_cores):
            memory = None
            if m.peak_memory_gib:
                memory = (m.peak_memory_gib * GIB + estimator.SERVER_PROCESS) / results.GB
            return core.Reference(f"catalog measurement ({m.machine}; {m.source})",
                                  gen_tps=m.decode_tok_s, prompt_tps=m.prefill_tok_s, memory_gb=memory)
    return None


def reference(model_id: str, quant: str | None, hw: HardwareProfile) -> core.Reference | None:
    """The reference for ``model_id`` at ``quant`` (the catalog's first quant if unknown)."""
    entry = catalog_entry(model_id)
    if entry is None:
        return None
    if quant not in entry.repos:
        quant = next(iter(entry.repos))
    measured = _measured(entry, quant, hw)
    est = estimator.estimate(entry, quant, hw, prompt_tokens=estimator.SHORT_CONTEXT)  # bench's are short
    if measured is None:
        return core.Reference(
            f"estimate for {entry.id} {quant} on {hw.label}",
            gen_tps=est.decode_tok_s, prompt_tps=est.prefill_tok_s, memory_gb=est.memory_bytes / results.GB,
        )
    if measured.memory_gb is None:  # the catalog measured speeds only: the estimate covers memory
        return core.Reference(measured.source + "; memory estimated", measured.gen_tps,
                              measured.prompt_tps, est.memory_bytes / results.GB)
    return measured
