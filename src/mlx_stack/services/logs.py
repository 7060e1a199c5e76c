"""Service logs: list them, read the end of one, follow it across rotations, rotate.

Each service writes ``logs/<service>.log`` through a log writer process
(system/logwriter.py) that rotates it into ``<service>.log.1.gz`` (newest) ...
``<service>.log.<K>.gz`` (oldest).

Every line handed out (``show``, ``read_all``, ``tail_lines``, ``follow``) has its control
characters escaped (:func:`mlx_stack.core.controls.escape_controls`): a log may hold what
a client sent, and printing it must not drive the terminal. Lines end at newline only (a
carriage return inside a line is shown as ``\\r``, not taken as a line break).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from mlx_stack.core.controls import escape_controls
from mlx_stack.errors import NotFoundError, UsageError
from mlx_stack.paths import Paths
from mlx_stack.system import logrotate

_BLOCK = 8192


@dataclass(frozen=True)
class LogFile:
    service: str
    path: Path
    size: int  # bytes of the current file (0 if only archives exist)
    archives: tuple[Path, ...]  # oldest first
    archive_bytes: int  # compressed size of the archives

    def as_dict(self) -> dict[str, object]:
        return {"service": self.service, "path": str(self.path), "size": self.size,
                "archives": [str(a) for a in self.archives], "archive_bytes": self.archive_bytes}


@dataclass(frozen=True)
class LogLines:
    """The end of one service's log (`logs SERVICE`), what ``--json`` prints."""

    service: str
    path: Path
    lines: list[str]

    def as_dict(self) -> dict[str, object]:
        return {"service": self.service, "path": str(self.path), "lines": self.lines}


class Rotated(NamedTuple):
    """One log after `logs --rotate`: "signalled" (a live writer was asked), "rotated" or "empty"."""

    service: str
    result: str

    def as_dict(self) -> dict[str, object]:
        return {"service": self.service, "result": self.result}


DEFAULT_TAIL = 50


def archives(path: Path) -> list[Path]:
    """Rotated files of ``path``, oldest first (LOG.K.gz ... LOG.1.gz, then LOG.1.pending)."""
    numbered: list[tuple[int, Path]] = []
    prefix = path.name + "."
    for cand in path.parent.glob(prefix + "*.gz"):
        middle = cand.name[len(prefix):-3]
        if middle.isdigit():
            numbered.append((int(middle), cand))
    out = [c for _, c in sorted(numbered, reverse=True)]
    pending = logrotate.pending_path(path)
    if pending.exists():
        out.append(pending)
    return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def list_logs(p: Paths) -> list[LogFile]:
    """Every service log in the logs directory (hidden writer locks left out)."""
    if not p.logs_dir.is_dir():
        return []
    names: set[str] = set()
    for entry in p.logs_dir.iterdir():
        name = entry.name
        if name.startswith("."):
            continue
        if name.endswith(".log"):
            names.add(name)
        elif ".log." in name:
            names.add(name.split(".log.", 1)[0] + ".log")
    out = []
    for name in sorted(names):
        path = p.log_file(name[:-4])
        arch = archives(path)
        out.append(LogFile(name[:-4], path, _size(path), tuple(arch), sum(_size(a) for a in arch)))
    return out


def find_log(p: Paths, service: str) -> LogFile:
    for log in list_logs(p):
        if log.service == service:
            return log
    known = escape_controls(", ".join(lg.service for lg in list_logs(p)), one_line=True) or "none yet"
    raise NotFoundError(f"no log for {service!r}", hint=f"logs there are: {known}")


def tail_lines(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of ``path``, reading backwards from the end in blocks."""
    if n <= 0:
        return []
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return []
    with fh:
        end = fh.seek(0, os.SEEK_END)
        pos, data = end, b""
        while pos > 0 and data.count(b"\n") <= n:
            step = min(_BLOCK, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    return [_line(ln) for ln in _split(data)[-n:]]


def _split(data: bytes) -> list[bytes]:
    """Lines at newlines only (``bytes.splitlines`` would also break at a lone ``\\r``)."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def _line(raw: bytes) -> str:
    """One line as shown: UTF-8 (bad bytes replaced), controls escaped."""
    return escape_controls(raw.decode(errors="replace"))


def _read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            return [_line(ln) for ln in _split(fh.read())]
    except (OSError, EOFError):
        return []  # vanished or half-written archive: skip it


def show(p: Paths, service: str, *, tail: int | None = None, all_files: bool = False) -> LogLines:
    """The last ``tail`` lines of a service's log (default 50); with ``all_files`` the
    rotated archives too, oldest first, every line unless ``tail`` is given."""
    log = find_log(p, service)
    lines = read_all(log, tail) if all_files else tail_lines(log.path, DEFAULT_TAIL if tail is None else tail)
    return LogLines(log.service, log.path, lines)


def read_all(log: LogFile, tail: int | None) -> list[str]:
    """Archives then the current file, oldest line first; only the last ``tail`` if given.

    With a tail, files are read newest first and reading stops once enough lines are in.
    """
    files = [*log.archives, log.path]
    if tail is None:
        return [ln for f in files for ln in _read_lines(f)]
    got: list[str] = tail_lines(log.path, tail)
    for f in reversed(log.archives):
        if len(got) >= tail:
            break
        got = _read_lines(f)[-(tail - len(got)):] + got
    return got[-tail:] if tail else []


def follow(path: Path, *, poll_s: float = 0.25, stop: Callable[[], bool] = lambda: False,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
    """Yield lines appended to ``path`` from now on, across rotations and re-creations.

    When the file is renamed away (rotated), the rest of the old file is read first,
    then the new file from its beginning, so no line is skipped.
    """
    fh = None
    buf = b""
    with contextlib.suppress(FileNotFoundError):
        fh = open(path, "rb")  # noqa: SIM115 - closed in finally
        fh.seek(0, os.SEEK_END)
    try:
        while not stop():
            chunk = fh.read() if fh is not None else b""
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for ln in lines:
                    yield _line(ln)
                continue
            if _replaced(path, fh):
                if fh is not None:
                    rest = fh.read()  # written just before the rotation
                    fh.close()
                    buf += rest
                    *lines, buf = buf.split(b"\n")
                    for ln in lines:
                        yield _line(ln)
                fh = None
                with contextlib.suppress(FileNotFoundError):
                    fh = open(path, "rb")  # noqa: SIM115
                continue
            sleep(poll_s)
    finally:
        if fh is not None:
            fh.close()


def _replaced(path: Path, fh: object) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    if fh is None:
        return True
    mine = os.fstat(fh.fileno())  # type: ignore[attr-defined]
    if (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev):
        return True
    return st.st_size < fh.tell()  # type: ignore[attr-defined]  # truncated in place


def rotate(p: Paths, service: str | None, keep: int | None = None) -> list[Rotated]:
    """Rotate one log or all: signal live writers, rotate idle files here. ``keep``: the
    archives kept, by default the setting log-max-files.

    Returns (service, "signalled" | "rotated" | "empty") per log.
    """
    if keep is None:
        from mlx_stack.services import config

        keep = int(config.load(p).get("log-max-files"))
    if keep < 1:
        raise UsageError("log-max-files must be at least 1")
    logs = [find_log(p, service)] if service else list_logs(p)
    return [Rotated(lg.service, logrotate.request_rotation(lg.path, keep)) for lg in logs]
