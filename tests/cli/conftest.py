from __future__ import annotations

from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from mlx_stack.cli.app import app


@pytest.fixture
def run() -> Callable[..., object]:
    """Invoke the CLI in-process; returns Click's Result (stdout/stderr apart)."""
    runner = CliRunner()

    def _run(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return _run
