"""Reading logs: the end of a file, archives in order, following across rotation."""

from __future__ import annotations

import gzip
import os
import threading
import time
from pathlib import Path

from mlx_stack.paths import Paths
from mlx_stack.services import logs
from mlx_stack.system import logrotate


def _write_log(p: Paths, service: str, generations: list[list[str]]) -> Path:
    """generations[0] is the oldest archive, the last one the current file."""
    p.logs_dir.mkdir(parents=True, exist_ok=True)
    path = p.logs_dir / f"{service}.log"
    *old, current = generations
    for age, lines in enumerate(reversed(old), start=1):
        text = "".join(f"{x}\n" for x in lines)
        logrotate.archive_path(path, age).write_bytes(gzip.compress(text.encode()))
    path.write_text("".join(f"{x}\n" for x in current))
    return path


def test_tail_reads_from_the_end_without_reading_everything(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    with open(path, "wb") as fh:
        fh.truncate(4 * 1024**3)  # 4 GB sparse: reading it all would take many seconds
        fh.seek(0, os.SEEK_END)
        fh.write(b"".join(f"line {i}\n".encode() for i in range(1000)))
    start = time.monotonic()
    assert logs.tail_lines(path, 3) == ["line 997", "line 998", "line 999"]
    assert time.monotonic() - start < 0.5


def test_tail_of_short_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    assert logs.tail_lines(path, 5) == []
    path.write_text("one\ntwo")
    assert logs.tail_lines(path, 5) == ["one", "two"]
    assert logs.tail_lines(path, 1) == ["two"]
    assert logs.tail_lines(path, 0) == []


def test_list_and_all_in_order(isolated_home: Paths) -> None:
    _write_log(isolated_home, "fast", [["a1", "a2"], ["b1"], ["c1", "c2"]])
    _write_log(isolated_home, "gateway", [["g"]])
    (isolated_home.logs_dir / ".fast.log.writer").write_text("1\n")
    found = logs.list_logs(isolated_home)
    assert [lg.service for lg in found] == ["fast", "gateway"]
    fast = found[0]
    assert [a.name for a in fast.archives] == ["fast.log.2.gz", "fast.log.1.gz"]
    assert logs.read_all(fast, None) == ["a1", "a2", "b1", "c1", "c2"]
    assert logs.read_all(fast, 4) == ["a2", "b1", "c1", "c2"]
    assert logs.read_all(fast, 1) == ["c2"]
    assert logs.show(isolated_home, "fast").lines == ["c1", "c2"]  # the current file only
    assert logs.show(isolated_home, "fast", tail=1).lines == ["c2"]
    shown = logs.show(isolated_home, "fast", all_files=True, tail=3)
    assert shown.as_dict() == {"service": "fast", "path": str(fast.path), "lines": ["b1", "c1", "c2"]}


def test_rotate_idle_logs(isolated_home: Paths) -> None:
    _write_log(isolated_home, "fast", [["x"]])
    assert logs.rotate(isolated_home, None, keep=3) == [("fast", "rotated")]
    done = logs.rotate(isolated_home, "fast", keep=3)
    assert done == [("fast", "empty")] and done[0].as_dict() == {"service": "fast", "result": "empty"}
    assert logs.read_all(logs.find_log(isolated_home, "fast"), None) == ["x"]


def test_follow_across_rotation(tmp_path: Path) -> None:
    path = tmp_path / "svc.log"
    path.write_text("old\n")
    stop = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        for line in logs.follow(path, poll_s=0.01, stop=stop.is_set):
            seen.append(line)

    t = threading.Thread(target=reader)
    t.start()
    try:
        time.sleep(0.1)
        with open(path, "a") as fh:
            fh.write("one\ntwo\n")
        os.replace(path, tmp_path / "svc.log.1")  # rotation...
        with open(tmp_path / "svc.log.1", "a") as fh:
            fh.write("three\n")  # ...with a last line written to the old file
        path.write_text("four\n")
        deadline = time.monotonic() + 5
        while len(seen) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(5)
    assert seen == ["one", "two", "three", "four"]


# A log may hold what a client sent: what `logs` hands out never carries a raw control.
HOSTILE = "x\x1b[31mred\x1b]0;title\x07 \rhidden\x00nul \x85nel \x7fdel \x9b2J\ttab é"
SHOWN = "x\\x1b[31mred\\x1b]0;title\\x07 \\rhidden\\x00nul \\x85nel \\x7fdel \\x9b2J\ttab é"


def _no_controls(lines: list[str], allowed: str = "\t") -> bool:
    return all(c in allowed or not (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) for ln in lines for c in ln)


def test_escape_controls() -> None:
    from mlx_stack.core.controls import escape_controls

    assert escape_controls(HOSTILE) == SHOWN
    assert escape_controls("a\nb\tc") == "a\nb\tc"
    assert escape_controls("a\nb\tc\r", one_line=True) == "a\\nb\\tc\\r"
    every = "".join(map(chr, range(0x100)))
    assert _no_controls([escape_controls(every)], allowed="\t\n")
    assert _no_controls([escape_controls(every, one_line=True)], allowed="")


def test_log_lines_are_escaped_in_tail_archives_and_follow(isolated_home: Paths, tmp_path: Path) -> None:
    path = _write_log(isolated_home, "gateway", [[HOSTILE, "old"], [HOSTILE, "b\rforged line"]])
    with open(path, "ab") as fh:
        fh.write(b"raw \x85 byte, crlf\r\n")  # a lone 0x85 byte is not UTF-8: replaced
    tail = logs.tail_lines(path, 3)
    assert tail == [SHOWN, "b\\rforged line", "raw \ufffd byte, crlf\\r"]  # a \r is no line break
    assert logs.show(isolated_home, "gateway").lines == tail
    every = logs.show(isolated_home, "gateway", all_files=True).lines
    assert every == [SHOWN, "old", *tail] and _no_controls(every)
    assert logs.show(isolated_home, "gateway", all_files=True, tail=4).lines == ["old", *tail]

    live = tmp_path / "live.log"
    live.write_text("")
    stop = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        seen.extend(logs.follow(live, poll_s=0.01, stop=stop.is_set))

    t = threading.Thread(target=reader)
    t.start()
    try:
        time.sleep(0.1)
        with open(live, "a") as fh:
            fh.write(HOSTILE + "\nsecond\r\n")
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(5)
    assert seen == [SHOWN, "second\\r"]
