"""`logs -f` follows a real log writer across its rotations without missing a line."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from mlx_stack.services import logs
from mlx_stack.system import logrotate, logwriter

pytestmark = pytest.mark.integration


def test_follow_a_rotating_writer(tmp_path: Path) -> None:
    log = tmp_path / "fast.log"
    log.write_text("")
    stop = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        seen.extend(logs.follow(log, poll_s=0.01, stop=stop.is_set))

    t = threading.Thread(target=reader)
    t.start()
    writer = subprocess.Popen(logwriter.command(log, max_bytes=2000, keep=1000), stdin=subprocess.PIPE)
    assert writer.stdin is not None
    try:
        time.sleep(0.2)
        for i in range(2000):
            writer.stdin.write(f"line {i:05d}\n".encode())
            if i % 50 == 0:
                writer.stdin.flush()
                time.sleep(0.005)  # let rotations happen between bursts
        writer.stdin.close()
        assert writer.wait(30) == 0
        deadline = time.monotonic() + 10
        while len(seen) < 2000 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        t.join(5)
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert logrotate.archive_path(log, 3).exists(), "expected several rotations"
    assert seen == [f"line {i:05d}" for i in range(2000)]
