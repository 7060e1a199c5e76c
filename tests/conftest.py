"""Every test gets its own MLX_STACK_HOME, no colour and a fixed width; `run` invokes the CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

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


@pytest.fixture
def run() -> Callable[..., Result]:
    """Invoke the CLI in-process; returns Click's Result (stdout/stderr apart)."""
    from typer.testing import CliRunner

    from mlx_stack.cli.app import app

    runner = CliRunner()

    def _run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return _run
