from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from mlx_stack.errors import ConflictError
from mlx_stack.system.fs import atomic_write
from mlx_stack.system.locks import file_lock


def test_atomic_write_sets_mode_and_leaves_no_temp(tmp_path: Path):
    target = tmp_path / "a" / "secret"
    atomic_write(target, "x", mode=0o600)
    assert target.read_text() == "x"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["secret"]


def _hold(path: str, ready, release) -> None:
    with file_lock(Path(path)):
        ready.set()
        release.wait(10)


def test_lock_excludes_other_processes(tmp_path: Path):
    lock = tmp_path / "l.lock"
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(lock), ready, release))
    proc.start()
    try:
        assert ready.wait(10)
        with pytest.raises(ConflictError), file_lock(lock, timeout=0.2):
            pass
    finally:
        release.set()
        proc.join(10)
    with file_lock(lock, timeout=1):  # released when the holder exits
        pass


def test_concurrent_config_writers_lose_nothing(isolated_home):
    from mlx_stack.services import config

    ctx = multiprocessing.get_context("fork")
    keys = [("litellm-port", "4321"), ("log-max-files", "7"), ("memory-budget-pct", "55"),
            ("default-quant", "int8")]
    procs = [ctx.Process(target=config.set_value, args=(isolated_home, k, v)) for k, v in keys]
    for p in procs:
        p.start()
    for p in procs:
        p.join(20)
    cfg = config.load(isolated_home)
    assert cfg.get("litellm-port") == 4321
    assert cfg.get("log-max-files") == 7
    assert cfg.get("memory-budget-pct") == 55
    assert cfg.get("default-quant") == "int8"
