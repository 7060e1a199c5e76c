"""The gateway's in-place reload of its model list (a fake router records what it got)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml


class FakeRouter:
    def __init__(self) -> None:
        self.model_lists: list[list[dict[str, Any]]] = []
        self.fallbacks: list[Any] = []
        self.context_window_fallbacks: list[Any] = []

    def set_model_list(self, model_list: list[dict[str, Any]]) -> None:
        self.model_lists.append(model_list)


def _write(path: Path, tiers: list[str], bump: int) -> None:
    config = {"model_list": [{"model_name": t, "litellm_params": {"model": f"openai/{t}"}} for t in tiers],
              "router_settings": {"fallbacks": [{tiers[0]: tiers[1:]}]}}
    path.write_text(yaml.safe_dump(config))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump * 1_000_000))


def test_reloads_only_when_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from mlx_stack.gateway.reload import ConfigReloader

    path = tmp_path / "litellm.yaml"
    _write(path, ["standard", "fast"], 0)
    reloader = ConfigReloader(path, recheck=0)  # the file at start is what the proxy loaded
    router = FakeRouter()
    assert not reloader.maybe_reload(router)
    _write(path, ["standard", "fast", "extra"], 5)
    assert reloader.maybe_reload(router)
    assert [m["model_name"] for m in router.model_lists[-1]] == ["standard", "fast", "extra"]
    assert router.fallbacks == [{"standard": ["fast", "extra"]}]
    assert router.context_window_fallbacks == []
    assert not reloader.maybe_reload(router)  # unchanged since

    path.write_text("model_list: [")  # broken: keep the current routes, never raise
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))
    assert not reloader.maybe_reload(router)
    assert len(router.model_lists) == 1 and reloader.reloads == 1


def test_rechecks_at_most_every_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from mlx_stack.gateway.reload import ConfigReloader

    path = tmp_path / "litellm.yaml"
    _write(path, ["standard", "fast"], 0)
    reloader = ConfigReloader(path, recheck=3600)
    router = FakeRouter()
    reloader.maybe_reload(router)  # the first look counts as a check
    _write(path, ["standard"] * 1 + ["x"], 5)
    assert not reloader.maybe_reload(router)  # too soon: no stat, no reload
