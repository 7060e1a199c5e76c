from __future__ import annotations

import pytest

from mlx_stack.core.units import GIB, MIB, format_bytes, gb, parse_budget, parse_memory_gb
from mlx_stack.errors import NetworkError, UsageError
from mlx_stack.services.catalog_store import load_catalog
from mlx_stack.services.hub_available import check_available


def test_parse_budget():
    assert parse_budget("30gb") == parse_budget("30GB") == parse_budget(" 30 gb ") == 30 * GIB
    assert parse_budget("512mb") == 512 * 1024**2
    assert parse_budget("1.5tb") == int(1.5 * 1024**4)
    assert parse_budget("50%", 64 * GIB) == 32 * GIB
    for bad in ("30", "0", "0gb", "-1", "-5gb", "abc", "", "10 parsecs", "0%", "101%", "x%"):
        with pytest.raises(UsageError):
            parse_budget(bad, 64 * GIB)
    with pytest.raises(UsageError):
        parse_budget("40%", None)


def test_parse_memory_and_format():
    assert parse_memory_gb("128") == parse_memory_gb("128gb") == parse_memory_gb("128 GB") == 128.0
    for bad in ("lots", "0", "64mb", "-8"):
        with pytest.raises(UsageError):
            parse_memory_gb(bad)
    assert gb(16 * GIB) == "16.0 GB" and gb(None) == "unknown" and gb(0) == "unknown"


def test_one_byte_formatter_binary_units():
    # Picked unit: whole numbers below a GB, one decimal from there on.
    assert [format_bytes(n) for n in (0, 999, 1024, 412_946, 512 * MIB, int(4.5 * GIB), 3 * 1024**4)] == [
        "0 B", "999 B", "1 KB", "403 KB", "512 MB", "4.5 GB", "3.0 TB"]
    assert format_bytes(-2 * MIB) == "-2 MB"  # over-budget differences may be negative
    assert format_bytes(0, smallest="MB") == "0 MB" and format_bytes(63 * MIB, smallest="MB") == "63 MB"
    # A fixed unit, with its decimals, with or without the unit's name.
    assert format_bytes(0.5 * GIB, "GB") == "0.5 GB"
    assert format_bytes(24 * GIB, "GB", digits=0) == "24 GB"
    assert format_bytes(2 * GIB, "GB", digits=2) == "2.00 GB"
    assert format_bytes(1.5 * GIB, "GB", show_unit=False) == "1.5"


def test_check_available_with_a_recording_hub():
    asked: list[str] = []

    def info(repo: str):
        asked.append(repo)
        return ("missing", None) if repo.endswith("8bit") else ("available", 1234)

    entries = load_catalog().filter(family="mistral")
    statuses = check_available(entries, info=info, is_offline=lambda: False)
    assert sorted(asked) == sorted(r.repo for e in entries for r in e.repos.values())
    assert {(s.quant, s.status) for s in statuses} == {("int4", "available"), ("int8", "missing")}
    assert statuses[0].as_dict()["model_id"] == entries[0].id  # catalog order


def test_check_available_offline():
    with pytest.raises(NetworkError):
        check_available(load_catalog(), info=lambda r: ("available", 0), is_offline=lambda: True)
