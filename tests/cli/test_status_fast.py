"""`status [--json] [--show-key]` is answered before Typer is imported (cli/main.py):
the same output, exit code and one-line errors as through the command tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_stack.cli.status_view import fast


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLX_STACK_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "mlx_stack", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def _loaded_typer(proc: subprocess.CompletedProcess[str]) -> bool:
    return any(line.rstrip().endswith(" typer") for line in proc.stderr.splitlines())


def _stderr(proc: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("import time:"))


def test_the_fast_path_answers_as_the_command_tree_does(tmp_path: Path) -> None:
    fast_run = _run(tmp_path / "home", "status", "--json")
    tree_run = _run(tmp_path / "home", "status", "--json", "--interval", "2")  # not a fast form
    assert not _loaded_typer(fast_run)
    assert _loaded_typer(tree_run)
    assert fast_run.returncode == tree_run.returncode == 4  # no stack configured yet
    assert json.loads(fast_run.stdout) == json.loads(tree_run.stdout)


def test_the_fast_path_prints_the_same_one_line_error(tmp_path: Path) -> None:
    home = tmp_path / "not-a-folder"
    home.write_text("a file where the state folder should be")
    fast_run = _run(home, "status", "--show-key")
    tree_run = _run(home, "status", "--show-key", "--interval", "2")
    assert not _loaded_typer(fast_run)
    assert fast_run.returncode == tree_run.returncode != 0
    assert _stderr(fast_run) == _stderr(tree_run)
    assert "Traceback" not in fast_run.stderr


@pytest.mark.parametrize("args", [
    ["status", "--watch"], ["status", "--json", "--json"], ["status", "-h"], ["status", "--help"],
    ["status", "--jsn"], ["up"], [], ["--version"], ["statusx"],
])
def test_other_command_lines_go_to_the_command_tree(args: list[str]) -> None:
    assert fast(args) is None


def test_its_quick_exit_loses_no_output(tmp_path: Path) -> None:
    """The fast path ends with os._exit after a flush: a large answer through a pipe arrives
    whole, and an output that cannot be written still fails as it did."""
    env = {**os.environ, "MLX_STACK_HOME": str(tmp_path / "home"), "NO_COLOR": "1", "COLUMNS": "120"}
    piped = subprocess.run([sys.executable, "-m", "mlx_stack", "status", "--json"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert piped.returncode == 4 and json.loads(piped.stdout)["configured"] is False
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        failed = subprocess.run([sys.executable, "-m", "mlx_stack", "status", "--json"], env=env,
                                stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
