"""core.litellm_routing (the config additions) and the gateway's counters and table."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from mlx_stack.core.litellm_routing import (
    HOOK,
    TierRoute,
    add_routing,
    parse_document,
    routing_document,
)
from mlx_stack.core.routing import default_rules
from mlx_stack.errors import StateError
from mlx_stack.gateway.counters import Counters, CountsWriter, Flusher, read_counts
from mlx_stack.gateway.table import TableSource

TIERS = [TierRoute("standard", "org/std", 2048), TierRoute("fast", "org/fast", None),
         TierRoute("longctx", "org/long", 8192)]


def _base() -> dict:
    return {
        "model_list": [{"model_name": t.name, "litellm_params": {"model": f"openai/{t.name}"}} for t in TIERS]
        + [{"model_name": "cloud", "litellm_params": {"model": "openai/x"}}],
        "router_settings": {"fallbacks": [{"standard": ["fast"]}]},
        "litellm_settings": {"callbacks": "other.hook"},
    }


def test_add_routing_adds_auto_hook_windows_and_chains() -> None:
    base = _base()
    out = add_routing(base, TIERS, default_rules([t.name for t in TIERS]), cloud="cloud")
    assert base == _base()  # the input is not modified
    entries = {e["model_name"]: e for e in out["model_list"]}
    assert entries["standard"]["model_info"] == {
        "mlx_stack_tier": "standard", "mlx_stack_model": "org/std", "max_input_tokens": 2048 - 512}
    assert "max_input_tokens" not in entries["fast"]["model_info"]  # unknown window
    assert "model_info" not in entries["cloud"]
    assert entries["auto"]["litellm_params"] == entries["standard"]["litellm_params"]
    assert out["litellm_settings"]["callbacks"] == ["other.hook", HOOK]
    assert out["router_settings"]["fallbacks"] == [{"standard": ["fast"]}]
    assert out["router_settings"]["context_window_fallbacks"] == [
        {"standard": ["longctx", "cloud"]}, {"longctx": ["cloud"]}]
    assert out["router_settings"]["enable_pre_call_checks"] is True
    again = add_routing(out, TIERS, default_rules(["standard"]))
    assert again["litellm_settings"]["callbacks"].count(HOOK) == 1


def test_document_round_trip_and_errors() -> None:
    rules = default_rules([t.name for t in TIERS], intent="agent-fleet")
    doc = json.loads(json.dumps(routing_document(TIERS, rules, counts_file="/x/counts.json")))
    table = parse_document(doc)
    assert table.rules == rules and table.counts_file == "/x/counts.json"
    assert table.context_windows == {"standard": 2048, "fast": None, "longctx": 8192}
    assert table.tiers["fast"].model == "org/fast"
    with pytest.raises(StateError):
        parse_document({"schema": 99, "tiers": []})


def test_counters_snapshot() -> None:
    c = Counters(wall=lambda: 100.0, pid=7)
    c.served("standard")
    c.fell_back("standard", "longctx")
    c.failed("fast")
    c.routed_auto("longctx", "long-prompt")
    snap = c.snapshot()
    assert snap["pid"] == 7 and snap["started_at"] == 100.0
    assert snap["tiers"]["standard"] == {"requests": 1, "errors": 0, "fallbacks_from": 1, "fallbacks_to": 0}
    assert snap["tiers"]["longctx"]["fallbacks_to"] == 1
    assert snap["auto"] == {"longctx": 1} and snap["auto_reasons"] == {"long-prompt": 1}


def test_writer_is_rate_limited(tmp_path: Path) -> None:
    now = [0.0]
    c = Counters()
    w = CountsWriter(c, tmp_path / "run" / "counts.json", interval=1.0, clock=lambda: now[0])
    assert w.due()
    w.write()
    assert not w.due()  # nothing new
    c.served("standard")
    assert not w.due()  # too soon
    now[0] = 1.0
    assert w.due()
    w.write()
    assert read_counts(w.path)["tiers"]["standard"]["requests"] == 1  # type: ignore[index]
    assert read_counts(tmp_path / "missing.json") is None


def test_flusher_writes_once_per_interval_and_catches_up(tmp_path: Path) -> None:
    c = Counters()
    w = CountsWriter(c, tmp_path / "counts.json", interval=0.2)
    flusher = Flusher(w)

    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        seen = []
        for _ in range(50):
            c.served("standard")
            flusher.changed(loop)
        await asyncio.sleep(0.1)
        seen.append(read_counts(w.path)["tiers"]["standard"]["requests"])  # type: ignore[index]
        c.served("standard")
        flusher.changed(loop)
        await asyncio.sleep(0.4)
        seen.append(read_counts(w.path)["tiers"]["standard"]["requests"])  # type: ignore[index]
        return seen

    assert asyncio.run(scenario()) == [50, 51]


def test_table_source_rereads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    now = [0.0]
    source = TableSource(path, recheck=1.0, clock=lambda: now[0])
    assert source.get() is None
    path.write_text(json.dumps(routing_document(TIERS[:1], default_rules(["standard"]), counts_file=None)))
    assert source.get() is None  # checked less than a second ago
    now[0] = 1.0
    assert source.get() is not None and source.get().rules.long_tier is None  # type: ignore[union-attr]
    path.write_text("{broken")
    os.utime(path, ns=(1, 1))
    now[0] = 2.0
    assert source.get() is not None  # keeps the last good table
