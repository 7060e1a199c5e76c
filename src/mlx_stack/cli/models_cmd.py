"""`mlx-stack models`: local models, the catalog with estimates, recommendations, the hub."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import typer

from mlx_stack.cli.plan_options import BandwidthOption, ChipOption, GpuCoresOption, MemoryOption

if TYPE_CHECKING:
    from mlx_stack.core.hardware import HardwareProfile

_FILTERS = "Catalog filters"
_REC = "Recommendation"


def models(
    catalog: bool = typer.Option(False, "--catalog", help="The catalog, with speed and memory here."),
    recommend: bool = typer.Option(False, "--recommend", help="Which model to run on each tier."),
    available: bool = typer.Option(False, "--available", help="Ask the Hugging Face Hub which repos exist."),
    family: str | None = typer.Option(None, "--family", help="Only this family (qwen3, llama...).",
                                      rich_help_panel=_FILTERS),
    tag: str | None = typer.Option(None, "--tag", help="Only models with this tag (code, vision...).",
                                   rich_help_panel=_FILTERS),
    tool_calling: bool = typer.Option(False, "--tool-calling", help="Only models that call tools.",
                                      rich_help_panel=_FILTERS),
    kind: str | None = typer.Option(None, "--kind", help="chat, embedding, rerank or all (default: all; "
                                    "embedding and rerank models are listed apart).",
                                    rich_help_panel=_FILTERS),
    budget: str | None = typer.Option(None, "--budget", help="Memory for all tiers: 30gb or 40% (default: "
                                      "memory-budget-pct of memory).", rich_help_panel=_REC),
    intent: str = typer.Option("balanced", "--intent", help="balanced, agent (a 64K-128K window on standard) "
                               "or agent-fleet.", rich_help_panel=_REC),
    show_all: bool = typer.Option(False, "--show-all", help="Also list every scored candidate.",
                                  rich_help_panel=_REC),
    quant: str | None = typer.Option(None, "--quant",
                                     help="int4, int6, int8 or bf16 (default: default-quant)."),
    prompt_tokens: int | None = typer.Option(None, "--prompt-tokens", metavar="N",
                                             help="Prompt length for prefill and time to first token "
                                                  "(default 16384, a typical agent turn)."),
    chip: ChipOption = None,
    gpu_cores: GpuCoresOption = None,
    memory: MemoryOption = None,
    bandwidth: BandwidthOption = None,
    json_: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List local models (no flag), the catalog, a recommendation or the hub's repos."""
    from mlx_stack.errors import UsageError

    modes = [flag for flag, on in (("--catalog", catalog), ("--recommend", recommend),
                                   ("--available", available)) if on]
    if len(modes) > 1:
        raise UsageError(f"{' and '.join(modes)} cannot be combined", hint="choose one mode")
    mode = modes[0] if modes else None
    _check_flag_modes(mode, family=family, tag=tag, tool_calling=tool_calling, budget=budget,
                      intent=intent, show_all=show_all, quant=quant, prompt_tokens=prompt_tokens,
                      plan=any(v is not None for v in (chip, gpu_cores, memory, bandwidth)))
    _check_kind(mode, kind)
    if mode is None:
        _local(json_)
    elif mode == "--available":
        _available(family, tag, tool_calling, json_)
    else:
        from mlx_stack.cli.plan_options import resolve_hardware

        hw = resolve_hardware(chip, gpu_cores, memory, bandwidth)
        if mode == "--catalog":
            _catalog(hw, family, tag, tool_calling, quant, prompt_tokens, json_, kind or "all")
        else:
            _recommend(hw, budget, intent, show_all, quant, prompt_tokens, json_)


def _check_flag_modes(mode: str | None, **given: object) -> None:
    from mlx_stack.errors import UsageError

    allowed = {
        "--family": ("--catalog", "--available"), "--tag": ("--catalog", "--available"),
        "--tool-calling": ("--catalog", "--available"), "--budget": ("--recommend",),
        "--intent": ("--recommend",), "--show-all": ("--recommend",),
        "--quant": ("--catalog", "--recommend"), "--prompt-tokens": ("--catalog", "--recommend"),
        "plan flags (--chip ...)": ("--catalog", "--recommend"),
    }
    values = {"--family": given["family"], "--tag": given["tag"], "--tool-calling": given["tool_calling"],
              "--budget": given["budget"], "--intent": given["intent"] != "balanced" or None,
              "--show-all": given["show_all"], "--quant": given["quant"],
              "--prompt-tokens": given["prompt_tokens"] is not None or None,
              "plan flags (--chip ...)": given["plan"]}
    for flag, value in values.items():
        if value and mode not in allowed[flag]:
            raise UsageError(f"{flag} works only with {' or '.join(allowed[flag])}",
                             hint=f"e.g. `mlx-stack models {allowed[flag][0]} ...`")


def _check_kind(mode: str | None, kind: str | None) -> None:
    from mlx_stack.errors import UsageError
    from mlx_stack.services.models import CATALOG_KINDS

    if kind is None:
        return
    if mode != "--catalog":
        raise UsageError("--kind works only with --catalog",
                         hint="e.g. `mlx-stack models --catalog --kind embedding`")
    if kind not in CATALOG_KINDS:
        from mlx_stack.core.config_schema import shown

        raise UsageError(f"invalid --kind {shown(kind)}: expected one of {', '.join(CATALOG_KINDS)}",
                         hint="e.g. --kind embedding")


def _local(json_: bool) -> None:
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.core.units import gb
    from mlx_stack.paths import paths
    from mlx_stack.services.local_models import list_local_models

    found = list_local_models(paths())
    if json_:
        terminal.json([m.as_dict() for m in found])
        return
    if not found:
        terminal.info("no local models yet: `mlx-stack models --recommend` suggests some, "
                      "`mlx-stack pull MODEL` downloads one")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("model", "size", "quant", "source"):
        table.add_column(col, no_wrap=col in ("model", "size"))
    for m in found:
        table.add_row(m.id, gb(m.size_bytes), m.quantization or "?", m.source)
    terminal.print(table)


def _catalog(hw: HardwareProfile, family: str | None, tag: str | None, tool_calling: bool, quant: str | None,
             prompt_tokens: int | None, json_: bool, kind: str = "all") -> None:
    from mlx_stack.cli.hardware_view import render_hardware
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.core.estimator import SHORT_CONTEXT
    from mlx_stack.core.scoring import TIER_CONTEXT
    from mlx_stack.core.units import gb
    from mlx_stack.paths import paths
    from mlx_stack.services.models import catalog_report

    report = catalog_report(paths(), hw, family=family, tag=tag, tool_calling=tool_calling, quant=quant,
                            prompt_tokens=prompt_tokens, kind=kind)
    rows, budget_reason = report.models, report.budget_reason
    if json_:
        terminal.json(report.as_dict())
        return
    render_hardware(hw)
    if kind in ("embedding", "rerank"):
        _retrieval_table(report.retrieval, budget_reason)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, title=f"Catalog ({len(rows)} models; budget {budget_reason})",
                  title_justify="left")
    full_k = TIER_CONTEXT["standard"] // 1024
    decode_cols = (f"decode@{SHORT_CONTEXT}", f"decode@{full_k}k")
    prompt = rows[0]["prompt_tokens"] if rows else 0
    ttft_col = f"TTFT@{_k(prompt)} (hit)"
    for col in ("model", "params", "ctx", "quant", *decode_cols, "prefill tok/s", ttft_col, "memory",
                "fits", "quality", "tools", "source"):
        table.add_column(col, no_wrap=col in ("model", "memory", "source", "quality", ttft_col))
    for r in rows:
        params = f"{r['params_b']:g}B" + (f" ({r['active_params_b']:g}B active)"
                                         if r["active_params_b"] != r["params_b"] else "")
        table.add_row(
            r["id"], params, f"{r['context_length'] // 1024}k", r["quant"], _num(r["decode_tok_s"]),
            _num(r["decode_full_tok_s"]), _num(r["prefill_tok_s"]), _ttft(r["ttft_s"], r["ttft_cached_s"]),
            gb(r["memory_bytes"]),
            "yes" if r["fits"] else "no", _quality(r["quality"]),
            r["capabilities"]["tool_call_parser"] or "-", _source(r["source"]),
        )
    terminal.print(table)
    terminal.info(f"decode tok/s for one request with {SHORT_CONTEXT} tokens of context, and with "
                  f"{TIER_CONTEXT['standard']} (the tier's full context); memory includes the KV cache "
                  f"for {TIER_CONTEXT['standard']} tokens and one server process")
    if rows:
        terminal.info(_ttft_note(prompt, rows[0]["cached_new_tokens"]))
    terminal.info("quality: the published aggregate score at this quantization (`pub`), or an estimate "
                  "from size (`est`); `--json` gives each score's benchmark, URL and date")
    if kind == "all":
        _retrieval_table(report.retrieval, budget_reason)


def _retrieval_table(rows: list[dict[str, Any]], budget_reason: str) -> None:
    """Embedding and rerank models (issue 25): each runs as its own vllm-mlx process."""
    from rich.table import Table

    from mlx_stack.cli.terminal import terminal
    from mlx_stack.core.units import gb

    if not rows:
        return
    table = Table(box=None, pad_edge=False, title=f"Embedding and rerank models ({len(rows)}; budget "
                  f"{budget_reason})", title_justify="left")
    for col in ("model", "kind", "dims", "max input", "quant", "size", "memory", "fits", "score"):
        table.add_column(col, no_wrap=col in ("model", "memory", "size"))
    for r in rows:
        dims = "-" if r["dimensions"] is None else f"{r['dimensions']}{'*' if r['matryoshka'] else ''}"
        table.add_row(r["id"], r["kind"], dims, f"{r['max_input_tokens']:,}", r["quant"],
                      f"{r['disk_gb']:g} GB", gb(r["memory_bytes"]) + (" (measured)" if r["texts_s"] else ""),
                      "yes" if r["fits"] else "no", "-" if r["score"] is None else f"{r['score']['score']:g}")
    terminal.print(table)
    terminal.info("memory: weights, activations and the tier's own server process (no KV cache); "
                  "dims*: `dimensions` may shorten the vector (Matryoshka); score: the published "
                  "retrieval score, `--json` gives its benchmark, URL and date")


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:g}"


def _k(tokens: int) -> str:
    return f"{tokens // 1024}k" if tokens >= 1024 and tokens % 1024 == 0 else str(tokens)


def _secs(v: float) -> str:
    return f"{v:.2g}s" if v < 10 else f"{v:.0f}s"


def _ttft(full: float | None, hit: float | None) -> str:
    return "n/a" if full is None or hit is None else f"{_secs(full)} ({_secs(hit)})"


def _ttft_note(prompt: int, new: int) -> str:
    return (f"prefill tok/s and TTFT (time to first token: the prefill, estimated) for a {prompt}-token "
            f"prompt (--prompt-tokens); (hit): a prefix-cache hit, only the last {new} tokens (the new "
            "turn) computed")


def _quality(q: Mapping[str, object] | None) -> str:
    if q is None:
        return "-"
    return f"{q['quantized_score']:g} {'pub' if q['basis'] == 'published' else 'est'}"


def _source(source: str) -> str:
    return "estimated" if source == "estimated" else "measured"


def _recommend(hw: HardwareProfile, budget: str | None, intent: str, show_all: bool, quant: str | None,
               prompt_tokens: int | None, json_: bool) -> None:
    from mlx_stack.cli.hardware_view import render_hardware
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.core.memory_plan import MB
    from mlx_stack.core.units import gb
    from mlx_stack.paths import paths
    from mlx_stack.services.models import recommend_report

    report = recommend_report(paths(), hw, budget=budget, intent=intent, quant=quant, show_all=show_all,
                              prompt_tokens=prompt_tokens)
    rec, profiles = report.recommendation, report.profiles
    if json_:
        terminal.json(report.as_dict())
        return
    render_hardware(hw)
    terminal.print("")
    w = rec.weights
    terminal.info(f"intent {intent}: weights quality {w.quality}, speed {w.speed} (full at "
                  f"{w.speed_target:g} tok/s), tool calling {w.tool_calling}, memory {w.memory}")
    terminal.info(f"budget {rec.budget_reason}; the tiers use {gb(rec.total_memory_bytes)}")
    from rich.table import Table

    from mlx_stack.core.estimator import SHORT_CONTEXT

    table = Table(box=None, pad_edge=False)
    prompt = rec.tiers[0].prompt_tokens if rec.tiers else 0
    ttft_col = f"TTFT@{_k(prompt)} (hit)"
    for col in ("tier", "model", "quant", f"decode@{SHORT_CONTEXT}", "decode@full", ttft_col, "memory",
                "quality", "source", "repo"):
        table.add_column(col, no_wrap=col in ("model", "memory", "repo", "quality", ttft_col))
    for t in rec.tiers:
        full = None if t.decode_full_tok_s is None else round(t.decode_full_tok_s, 1)
        table.add_row(t.name, t.entry.id, t.quant, _num(None if t.decode_tok_s is None
                                                        else round(t.decode_tok_s, 1)),
                      f"{_num(full)} @{t.context // 1024}k", _ttft(t.ttft_s, t.ttft_cached_s),
                      gb(t.memory_bytes),
                      _quality(None if t.quality is None else t.quality.as_dict()), _source(t.source), t.repo)
    if rec.tiers:
        terminal.print(table)
        from mlx_stack.core.estimator import CACHED_NEW_TOKENS

        terminal.info(_ttft_note(prompt, min(CACHED_NEW_TOKENS, prompt)))
        from mlx_stack.cli.serving_view import render_plan

        render_plan(profiles, rec.budget_bytes // MB)
    for t in rec.tiers:
        terminal.info(f"{t.name}: {t.reason}")
        for what, where in t.sources.items():
            terminal.info(f"  {what}: {where}")
    for d in rec.dropped:
        terminal.warn(f"tier {d.name} dropped: {d.reason}")
    for n in rec.notes:
        terminal.warn(n)
    if show_all:
        terminal.print("")
        table = Table(box=None, pad_edge=False, title="All candidates", title_justify="left")
        for col in ("model", "quant", "score", "quality", f"decode@{SHORT_CONTEXT}", "memory", "fits"):
            table.add_column(col, no_wrap=col in ("model", "memory", "quality"))
        for c in rec.candidates:
            qual = _quality(None if c.quality_info is None else c.quality_info.as_dict())
            table.add_row(c.entry.id, c.quant, f"{c.score:.2f}", qual,
                          _num(None if c.decode_tok_s is None else round(c.decode_tok_s, 1)),
                          gb(c.memory_bytes), "yes" if c.memory_bytes <= rec.budget_bytes else "no")
        terminal.print(table)


def _available(family: str | None, tag: str | None, tool_calling: bool, json_: bool) -> None:
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.services.models import available_report

    report = available_report(family=family, tag=tag, tool_calling=tool_calling)
    if json_:
        terminal.json(report.as_dict())
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("model", "quant", "repo", "hub", "downloads"):
        table.add_column(col, no_wrap=col in ("model", "repo"))
    for s in report.repos:
        table.add_row(s.model_id, s.quant, s.repo, s.status, "" if s.downloads is None else str(s.downloads))
    terminal.print(table)
