"""Every test gets its own MLX_STACK_HOME, no colour and a fixed width."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_stack.paths import Paths


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    home = tmp_path / "mlx-stack-home"
    monkeypatch.setenv("MLX_STACK_HOME", str(home))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return Paths(home=home)
