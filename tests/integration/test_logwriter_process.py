"""The log writer as a real process: concurrent writers, rotation, no line lost."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlx_stack.system import logrotate, logwriter

pytestmark = pytest.mark.integration

# Each child writes LINES lines of at most PIPE_BUF bytes, so pipe writes are atomic.
CHILD = r"""
import os, sys
name, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    os.write(1, f"{name} {i:06d} {'x' * (i % 97)}\n".encode())
"""


def _read_all(log: Path) -> list[bytes]:
    data = b""
    n = 1
    while logrotate.archive_path(log, n).exists():
        n += 1
    for i in range(n - 1, 0, -1):
        chunk = gzip.decompress(logrotate.archive_path(log, i).read_bytes())
        assert chunk.endswith(b"\n"), f"archive {i} ends mid-line"
        data += chunk
    if log.exists():
        data += log.read_bytes()
    return data.splitlines()


def _wait(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_concurrent_writers_with_rotations_lose_no_line(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "standard.log"
    writer = subprocess.Popen(logwriter.command(log, max_bytes=20_000, keep=10_000), stdin=subprocess.PIPE)
    assert writer.stdin is not None
    children: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 20
        while logrotate.live_writer_pid(log) is None:  # started and holding its lock
            assert time.monotonic() < deadline
            time.sleep(0.02)
        writers, per_child = 4, 5000
        for c in range(writers):
            children.append(
                subprocess.Popen([sys.executable, "-c", CHILD, f"w{c}", str(per_child)], stdout=writer.stdin)
            )
        writer.stdin.close()  # the children hold the pipe; EOF comes when they all exit
        # Ask for extra rotations while they write (what `logs --rotate` does).
        deadline = time.monotonic() + 60
        while any(ch.poll() is None for ch in children) and time.monotonic() < deadline:
            assert logrotate.live_writer_pid(log) == writer.pid
            assert logrotate.request_rotation(log, keep=10_000) == "signalled"
            time.sleep(0.05)
        for ch in children:
            assert _wait(ch) == 0
        assert _wait(writer) == 0
    finally:
        for p in [*children, writer]:
            if p.poll() is None:
                p.kill()
                p.wait()
    lines = _read_all(log)
    assert len(lines) == writers * per_child
    assert len(set(lines)) == len(lines)
    for c in range(writers):
        mine = [ln for ln in lines if ln.startswith(f"w{c} ".encode())]
        assert [int(ln.split()[1]) for ln in mine] == list(range(per_child)), "order or loss"
        for ln in mine:
            i = int(ln.split()[1])
            assert ln == f"w{c} {i:06d} {'x' * (i % 97)}".encode(), "a line was split"
    assert logrotate.archive_path(log, 2).exists(), "expected several rotations"
    assert logrotate.live_writer_pid(log) is None


def test_log_moved_away_is_reopened(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    writer = subprocess.Popen(logwriter.command(log, 10**9, 3), stdin=subprocess.PIPE)
    assert writer.stdin is not None
    try:
        writer.stdin.write(b"before\n")
        writer.stdin.flush()
        deadline = time.monotonic() + 10
        while not (log.exists() and log.read_bytes() == b"before\n"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.replace(log, tmp_path / "moved.log")
        time.sleep(logwriter.REOPEN_CHECK_S + 0.5)  # the writer notices within a check period
        writer.stdin.write(b"after\n")
        writer.stdin.flush()
        writer.stdin.close()
        assert _wait(writer) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert (tmp_path / "moved.log").read_bytes() == b"before\n"
    assert log.read_bytes() == b"after\n"


def test_a_full_disk_never_blocks_the_service(tmp_path: Path) -> None:
    log = tmp_path / "full.log"
    log.symlink_to("/dev/full")  # every write fails with ENOSPC
    writer = subprocess.Popen(logwriter.command(log, 1000, 2), stdin=subprocess.PIPE)
    assert writer.stdin is not None
    try:
        start = time.monotonic()
        for _ in range(2000):  # 8 MB: far more than a pipe holds
            writer.stdin.write(b"y" * 4095 + b"\n")
        writer.stdin.close()
        assert _wait(writer, timeout=30) == 0
        assert time.monotonic() - start < 30
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()


def test_sigterm_drains_then_exits(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    writer = subprocess.Popen(logwriter.command(log, 10**6, 2), stdin=subprocess.PIPE)
    assert writer.stdin is not None
    try:
        writer.stdin.write(b"kept\n")
        writer.stdin.flush()
        deadline = time.monotonic() + 20
        while logrotate.live_writer_pid(log) is None:  # its signal handlers are in place by then
            assert time.monotonic() < deadline
            time.sleep(0.02)
        writer.send_signal(signal.SIGTERM)
        writer.stdin.write(b"also kept\n")  # the service's last words after the signal
        writer.stdin.flush()
        writer.stdin.close()
        assert _wait(writer, timeout=10) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert log.read_bytes() == b"kept\nalso kept\n"
