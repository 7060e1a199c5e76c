"""The log writer's rotation and line handling, in-process (no subprocess)."""

from __future__ import annotations

import gzip
import os
import signal
from pathlib import Path

import pytest

from mlx_stack.system import logrotate, logwriter


def _archives(log: Path) -> list[str]:
    return sorted(p.name for p in log.parent.glob(log.name + ".*"))


def test_shift_keeps_newest_first_and_drops_the_oldest(tmp_path: Path) -> None:
    log = tmp_path / "fast.log"
    for n in range(4):
        log.write_text(f"generation {n}\n")
        assert logrotate.shift_and_move_aside(log, keep=2)
        logrotate.compress_pending(log)
    assert _archives(log) == ["fast.log.1.gz", "fast.log.2.gz"]
    assert gzip.decompress(logrotate.archive_path(log, 1).read_bytes()) == b"generation 3\n"
    assert gzip.decompress(logrotate.archive_path(log, 2).read_bytes()) == b"generation 2\n"


def test_empty_or_missing_log_is_not_rotated(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert not logrotate.shift_and_move_aside(log, keep=3)
    log.write_text("")
    assert not logrotate.shift_and_move_aside(log, keep=3)
    assert _archives(log) == []


def test_an_interrupted_rotation_is_finished_first(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    logrotate.pending_path(log).write_text("older\n")  # a crash left it uncompressed
    log.write_text("newer\n")
    assert logrotate.shift_and_move_aside(log, keep=3)
    logrotate.compress_pending(log)
    assert gzip.decompress(logrotate.archive_path(log, 1).read_bytes()) == b"newer\n"
    assert gzip.decompress(logrotate.archive_path(log, 2).read_bytes()) == b"older\n"


def test_request_rotation_on_an_idle_file_rotates_it_here(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("a\n")
    assert logrotate.live_writer_pid(log) is None
    assert logrotate.request_rotation(log, keep=5) == "rotated"
    assert not log.exists()
    assert logrotate.request_rotation(log, keep=5) == "empty"
    assert _archives(log) == ["x.log.1.gz"]


def _pipe_run(tmp_path: Path, data: list[bytes], max_bytes: int = 10, keep: int = 50) -> Path:
    log = tmp_path / "svc.log"
    r, w = os.pipe()
    for chunk in data:
        os.write(w, chunk)
    os.close(w)
    try:
        assert logwriter.run(log, max_bytes, keep, stdin_fd=r) == 0
    finally:
        os.close(r)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    return log


def _all_bytes(log: Path) -> bytes:
    out = b""
    n = 1
    while logrotate.archive_path(log, n).exists():
        n += 1
    for i in range(n - 1, 0, -1):
        out += gzip.decompress(logrotate.archive_path(log, i).read_bytes())
    return out + (log.read_bytes() if log.exists() else b"")


def test_a_line_is_never_split_across_files(tmp_path: Path) -> None:
    # The first chunk ends mid-line; the file is already past max-bytes but must not rotate yet.
    log = _pipe_run(tmp_path, [b"first line\nsecond li", b"ne\nthird\n"], max_bytes=5)
    assert _all_bytes(log) == b"first line\nsecond line\nthird\n"
    for i in range(1, 10):
        p = logrotate.archive_path(log, i)
        if p.exists():
            assert gzip.decompress(p.read_bytes()).endswith(b"\n")


def test_trailing_partial_line_is_kept_at_eof(tmp_path: Path) -> None:
    log = _pipe_run(tmp_path, [b"done\nno newline"], max_bytes=1000)
    assert log.read_bytes() == b"done\nno newline"


def test_parse_rejects_unknown_arguments() -> None:
    with pytest.raises(SystemExit):
        logwriter._parse(["--nope", "1"])
    parsed = logwriter._parse(["--file", "a.log", "--max-bytes", "7", "--keep", "2"])
    assert parsed == (Path("a.log"), 7, 2, False)
    assert logwriter._parse(["--file", "a.log", "--redact-prompts"])[3] is True


def test_prompt_text_is_removed_and_the_rest_kept() -> None:
    redact = logwriter.redactor()
    raw = (b"INFO:vllm_mlx.server:[REQUEST] POST /v1/chat/completions total_chars=12\n"
           b"INFO:vllm_mlx.server:[REQUEST] last user message preview: my secret plan\n"
           b"INFO:vllm_mlx.server:[REQUEST] POST /v1/completions prompt_chars=9 prompt_preview=the secret\n"
           b"INFO:vllm_mlx.models.mllm:  Chat msg 0: role=user, content=secret pixels...\n"
           b'INFO:     127.0.0.1:1 - "POST /v1/chat/completions HTTP/1.1" 200 OK\n')
    out = redact(raw)  # type: ignore[operator]
    assert b"secret" not in out
    assert out.count(logwriter.REDACTED) == 3
    assert b"total_chars=12" in out and b"prompt_chars=9" in out and b"200 OK" in out
