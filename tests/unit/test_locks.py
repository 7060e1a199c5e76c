"""system.locks: flock per open file description, probes that never disturb the holder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlx_stack.errors import ConflictError
from mlx_stack.system import locks


def test_a_second_description_in_the_same_process_conflicts(tmp_path: Path):
    path = tmp_path / "x.lock"
    with locks.FileLock(path) as first, locks.FileLock(path) as second:
        assert first.try_acquire() and first.try_acquire()  # held: asking again is a no-op
        assert not second.try_acquire()
        assert not second.acquire(0.1)
        first.close()
        assert second.try_acquire()


def test_probes_see_the_holder_and_its_pid(tmp_path: Path):
    path = tmp_path / "x.lock"
    assert not locks.is_held(path) and locks.holder_pid(path) is None  # no file yet
    with locks.FileLock(path) as lock:
        lock.open()
        assert not locks.is_held(path)
        assert lock.try_acquire()
        assert locks.is_held(path) and locks.holder_pid(path) is None  # no pid recorded yet
        lock.record_pid()
        assert locks.holder_pid(path) == os.getpid()
        assert lock.held  # probing did not take the lock away
    assert not locks.is_held(path) and locks.holder_pid(path) is None
    assert (path.stat().st_mode & 0o777) == 0o600


def test_file_lock_waits_then_names_what_holds_it(tmp_path: Path):
    path = tmp_path / "sub" / "x.lock"
    with locks.file_lock(path, what="setup"):
        assert locks.holder_pid(path) == os.getpid()
        conflict = pytest.raises(ConflictError, match="another up/down operation holds the lock")
        with conflict, locks.file_lock(path, timeout=0, what="up/down"):
            pass
    with locks.file_lock(path, timeout=0):
        pass
