"""Services the CLI only renders: saved results (one lookup for `models` and `setup`),
`status` (stack.yaml read once), `config set/unset` for every kind of key, the doctor's
report file, log rotation with the configured keep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlx_stack.core import bench as core
from mlx_stack.core import bench_result as results
from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.errors import NotFoundError, StateError, UsageError
from mlx_stack.paths import Paths
from mlx_stack.services import bench_store, doctor, logs, models, settings, stack_store
from mlx_stack.services import status as status_service
from mlx_stack.services.catalog_store import load_catalog
from mlx_stack.system import ports

PROFILE = "cpu-24gb"


def _save(p: Paths, model: str) -> None:
    single = core.summarize_single([core.Sample("short", 100, 11, 0.5, 1.5)])
    level = core.summarize_level(1, [core.Sample("code", 20, 11, 0.1, 1.1)], 1.1)
    bench_store.save(p, results.BenchResult(
        model=model, target=model, target_kind="catalog", profile=PROFILE, hardware="test",
        measured_at="2026-11-25T20:00:00+00:00", iterations=1, max_tokens=16, prompts=("short",),
        single=single, concurrency=(level,), peak_memory_gb=1.5))


def _stack(p: Paths) -> Stack:
    stack = Stack((Tier("standard", "org/big", "/models/big", ports.free_port(), context_window=32768),
                   Tier("fast", "org/small", "/models/small", ports.free_port(), context_window=8192)),
                  ("standard", "fast"), Gateway("127.0.0.1", ports.free_port()))
    stack_store.save(p, stack)
    return stack


def test_saved_results_are_keyed_by_catalog_id(isolated_home: Paths) -> None:
    entry = next(iter(load_catalog()))
    quant, repo = next(iter(entry.repos.items()))
    _save(isolated_home, repo.repo)
    _save(isolated_home, "org/not-in-the-catalog")
    saved = models.saved_results(isolated_home, PROFILE)
    assert saved[entry.id]["quant"] == quant
    assert saved[entry.id]["memory_bytes"] > 0
    assert "org/not-in-the-catalog" in saved


def test_saved_results_are_optional_help(isolated_home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    _save(isolated_home, "org/m")

    def broken() -> None:
        raise StateError("catalog/x.yaml: broken")

    monkeypatch.setattr("mlx_stack.services.catalog_store.load_catalog", broken)
    assert models.saved_results(isolated_home, PROFILE) == {}


def test_recommend_report_refuses_an_unknown_intent(isolated_home: Paths) -> None:
    from mlx_stack.services import hardware

    with pytest.raises(UsageError, match="unknown intent 'nope'"):
        models.recommend_report(isolated_home, hardware.detect(), intent="nope")


def test_status_reads_the_stack_once(isolated_home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    _stack(isolated_home)
    loads: list[Paths] = []
    real = stack_store.load
    monkeypatch.setattr(stack_store, "load", lambda p: (loads.append(p), real(p))[1])
    result = status_service.status(isolated_home)
    assert len(loads) == 1
    data = result.as_dict()
    keys = list(data)
    assert keys[0] == "hardware" and keys[-1] == "routing"
    assert {s["name"]: s["state"] for s in data["services"]} == {
        "standard": "stopped", "fast": "stopped", "gateway": "stopped"}
    assert [t["name"] for t in data["routing"]["tiers"]] == ["standard", "fast"]


def test_status_without_a_stack(isolated_home: Paths) -> None:
    data = status_service.status(isolated_home).as_dict()
    assert data["configured"] is False and data["routing"] is None and data["services"] == []


def test_settings_change_covers_every_kind_of_key(isolated_home: Paths) -> None:
    assert settings.change(isolated_home, "default-quant", "int8").value == "int8"
    assert settings.change(isolated_home, "default-quant", None).value == "int4"
    shown = settings.change(isolated_home, "openrouter-key", "sk-or-abcdefgh12345678").value
    assert "abcdefgh" not in shown  # masked
    _stack(isolated_home)
    assert settings.change(isolated_home, "routing.tool-tier", "fast").as_dict() == {
        "key": "routing.tool-tier", "value": "fast", "note": ""}
    tier = settings.change(isolated_home, "tiers.fast.mode", "on-demand")
    assert tier.value == "on-demand" and tier.note
    assert settings.change(isolated_home, "tiers.fast.mode", None).value == "resident"


def test_the_doctor_report_file(isolated_home: Paths, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot write the report to"):
        doctor.report_target(tmp_path)
    with pytest.raises(UsageError):
        doctor.report_target(tmp_path / "missing" / "r.json")
    target = doctor.report_target(tmp_path / "r.json")
    doctor.write_report(target, {"a": Path("/x")})
    assert json.loads(target.read_text()) == {"a": "/x"}
    assert target.stat().st_mode & 0o777 == 0o600


def test_rotate_keeps_the_configured_number(isolated_home: Paths) -> None:
    isolated_home.logs_dir.mkdir(parents=True)
    isolated_home.log_file("fast").write_text("line\n")
    assert logs.rotate(isolated_home, None) == [("fast", "rotated")]
    with pytest.raises(NotFoundError):
        logs.rotate(isolated_home, "nosuch")
