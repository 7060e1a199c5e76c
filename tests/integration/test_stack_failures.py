"""`up` when a real server cannot start: a clear error, the state shown, nothing left behind."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mlx_stack.cli.app import app
from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_store
from mlx_stack.system import ports

pytestmark = pytest.mark.integration


def test_a_tier_that_cannot_load_its_model(isolated_home: Paths) -> None:
    not_a_model = isolated_home.home / "models" / "empty"
    not_a_model.mkdir(parents=True)
    stack = Stack((Tier("standard", "org/nothing", str(not_a_model), ports.free_port()),), ("standard",),
                  Gateway(port=ports.free_port()))
    stack_store.save(isolated_home, stack)
    runner = CliRunner()
    try:
        r = runner.invoke(app, ["up"], catch_exceptions=False)
        assert r.exit_code == 7, r.stderr
        assert "standard exited while starting" in r.stderr
        assert "standard.log" in r.stderr  # the hint says where to look
        states = {s.name: s.state for s in lifecycle.status(isolated_home).services}
        assert states["standard"] == "crashed"
    finally:
        r = runner.invoke(app, ["down"], catch_exceptions=False)
    assert r.exit_code == 0
    assert not list(isolated_home.run_dir.glob("*.pid"))
