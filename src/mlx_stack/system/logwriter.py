"""A tiny log writer process: stdin -> a size-rotated, compressed log file.

Run as::

    python -m mlx_stack.system.logwriter --file LOG --max-bytes N --keep K

with a service's stdout and stderr on its stdin. It appends whole lines to LOG;
when LOG reaches N bytes it rotates at a line boundary (LOG -> LOG.1.gz, older
archives shift up to LOG.K.gz, the oldest is dropped), so no line is lost or
split across two files. It also rotates on SIGUSR1 (``mlx-stack logs --rotate``),
reopens LOG if it was moved away or deleted, and exits at EOF.

Why a separate process: the service writes to a pipe and never holds the file,
so rotation needs no cooperation from vllm-mlx or LiteLLM. A full disk never
blocks or kills the service: the writer keeps draining the pipe, counts what it
could not store and says so in the log once it can write again.

While alive, a writer holds an exclusive ``flock`` on ``.<LOG name>.writer``
next to LOG and records its pid there; ``logrotate.request_rotation`` uses that
to signal a live writer, or rotates an idle file itself under the same lock.

This module is imported by a process started once per service: it imports only
the standard library, and ``gzip`` only when it compresses.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mlx_stack.system.dirs import make_private_dirs
from mlx_stack.system.locks import FileLock
from mlx_stack.system.logrotate import compress_pending, lock_path, shift_and_move_aside

CHUNK = 65536
# A line longer than this is written in pieces (rotation still waits for its end).
MAX_PENDING = 1 << 20
# A partial line (no newline yet, e.g. a progress bar) is flushed after this long.
PARTIAL_FLUSH_S = 1.0
# How often the writer checks that LOG is still the file it has open.
REOPEN_CHECK_S = 1.0
# After SIGTERM, keep draining the pipe this long (the service usually exits too).
TERM_DRAIN_S = 5.0


def command(log_file: Path, max_bytes: int, keep: int, *, redact_prompts: bool = False) -> list[str]:
    """The argv that starts a writer for ``log_file`` with this interpreter."""
    return [
        sys.executable, "-m", "mlx_stack.system.logwriter",
        "--file", str(log_file), "--max-bytes", str(int(max_bytes)), "--keep", str(int(keep)),
        *(["--redact-prompts"] if redact_prompts else []),
    ]


# What vllm-mlx 0.6 logs of a request's text (INFO; it has no flag to turn them off):
# the last user message of a chat / Anthropic request (300 chars), a completion's prompt
# (200), a vision model's messages (80). The writer keeps the line, not the text.
PROMPT_PATTERNS = (
    rb"(\[REQUEST\] last user message preview: )[^\n]*",
    rb"( prompt_preview=)[^\n]*",
    rb"(  Chat msg \d+: role=[^,\n]*, content=)[^\n]*",
)
REDACTED = b"[prompt text not logged: `mlx-stack config set log-prompts true` keeps it]"


def redactor() -> Callable[[bytes], bytes]:
    """A function bytes -> bytes that removes prompt text from vllm-mlx log lines."""
    import re

    pattern = re.compile(b"|".join(b"(?:" + p + b")" for p in PROMPT_PATTERNS))

    def redact(data: bytes) -> bytes:
        def keep_prefix(m: re.Match[bytes]) -> bytes:
            prefix = next(g for g in m.groups() if g is not None)
            return prefix + REDACTED

        return pattern.sub(keep_prefix, data)

    return redact


def attach(log_file: Path, max_bytes: int, keep: int) -> int:
    """Send this process's stdout and stderr through a new writer; return its pid.

    The writer runs in its own session, so signals meant for us (launchd stopping
    the watchdog) do not cut our last lines; it exits when we do (EOF).
    """
    import subprocess

    r, w = os.pipe()
    try:
        proc = subprocess.Popen(command(log_file, max_bytes, keep), stdin=r, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    finally:
        os.close(r)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(w, 1)
    os.dup2(w, 2)
    os.close(w)
    _attached.append(proc)  # keep it referenced: it lives as long as we do
    return proc.pid


_attached: list[object] = []


# --- the writer -------------------------------------------------------------------


class Writer:
    """Appends whole lines to LOG and rotates it; the state of one writer process."""

    def __init__(self, log_file: Path, max_bytes: int, keep: int, *, redact_prompts: bool = False):
        self.log_file = log_file
        self.redact = redactor() if redact_prompts else None
        self.max_bytes = max(1, max_bytes)
        self.keep = max(1, keep)
        self.fd = -1
        self.lock = FileLock(lock_path(log_file))
        self.mid_line = False  # part of a line is in the file, its end is not
        self.dropped = 0  # bytes we could not store (disk full)
        self.rotate_requested = False
        self.last_reopen_check = 0.0
        self.compressor: threading.Thread | None = None

    # files

    def open(self) -> None:
        make_private_dirs(self.log_file.parent)
        self.fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):  # a log from an older version may be 0644
            os.fchmod(self.fd, 0o600)
        self.last_reopen_check = time.monotonic()

    def reopen(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1
        self.open()

    @property
    def has_lock(self) -> bool:
        return self.lock.held

    def try_lock(self) -> None:
        """Take the writer lock if free; without it we append but never rotate."""
        if self.lock.held:
            return
        try:
            if not self.lock.try_acquire():
                return
        except OSError:
            return
        self.lock.record_pid()

    def check_moved(self, now: float) -> None:
        if now - self.last_reopen_check < REOPEN_CHECK_S:
            return
        self.last_reopen_check = now
        try:
            on_disk = os.stat(self.log_file)
            mine = os.fstat(self.fd)
            moved = (on_disk.st_ino, on_disk.st_dev) != (mine.st_ino, mine.st_dev)
        except OSError:
            moved = True
        if moved:
            with contextlib.suppress(OSError):
                self.reopen()

    # writing

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self.redact is not None:
            data = self.redact(data)
        if self.fd < 0:
            try:
                self.open()
            except OSError:
                self.dropped += len(data)
                return
        if self.dropped:
            note = f"[mlx-stack logwriter: {self.dropped} bytes lost: could not write the log]\n"
            if self.mid_line:
                note = "\n" + note
            if not self._write_all(note.encode()):
                self.dropped += len(data)
                return
            self.dropped = 0
            self.mid_line = False
        if not self._write_all(data):
            self.dropped += len(data)
            return
        self.mid_line = not data.endswith(b"\n")

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError:
                return False  # ENOSPC, EIO...: drop, never block the service
            view = view[n:]
        return True

    def maybe_rotate(self) -> None:
        """Rotate at a line boundary when LOG is full or a rotation was asked for."""
        if self.mid_line:
            return
        if not self.rotate_requested:
            try:
                if os.fstat(self.fd).st_size < self.max_bytes:
                    return
            except OSError:
                return
        self.try_lock()
        if not self.has_lock:
            return  # another writer owns this log and its rotation
        self.rotate_requested = False
        if self.compressor is not None:
            self.compressor.join()  # one compression at a time keeps archives in order
            self.compressor = None
        try:
            moved = shift_and_move_aside(self.log_file, self.keep)
        except OSError:
            return
        with contextlib.suppress(OSError):
            self.reopen()
        if moved:
            self.compressor = threading.Thread(target=self._compress, daemon=False)
            self.compressor.start()

    def _compress(self) -> None:
        with contextlib.suppress(OSError):
            compress_pending(self.log_file)

    def close(self) -> None:
        if self.compressor is not None:
            self.compressor.join()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def run(log_file: Path, max_bytes: int, keep: int, stdin_fd: int = 0, *, redact_prompts: bool = False) -> int:
    """The writer loop: read stdin until EOF, write whole lines, rotate."""
    writer = Writer(log_file, max_bytes, keep, redact_prompts=redact_prompts)
    term_deadline: list[float] = []

    def on_usr1(_sig: int, _frame: object) -> None:
        writer.rotate_requested = True

    def on_term(_sig: int, _frame: object) -> None:
        if not term_deadline:
            term_deadline.append(time.monotonic() + TERM_DRAIN_S)

    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C in a terminal or a closed terminal must not cut a service's log.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    with contextlib.suppress(OSError):  # keep draining; write() retries the open
        writer.open()
    writer.try_lock()
    pending = b""
    pending_since = 0.0
    while True:
        now = time.monotonic()
        if term_deadline and now >= term_deadline[0]:
            break
        timeout = PARTIAL_FLUSH_S if pending else REOPEN_CHECK_S
        try:
            ready, _, _ = select.select([stdin_fd], [], [], timeout)
        except InterruptedError:
            ready = []
        now = time.monotonic()
        if writer.fd >= 0:
            writer.check_moved(now)
        if ready:
            try:
                chunk = os.read(stdin_fd, CHUNK)
            except InterruptedError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                break
            if not pending:
                pending_since = now
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if cut:
                writer.write(pending[:cut])
                pending = pending[cut:]
                pending_since = now
            if len(pending) >= MAX_PENDING:
                writer.write(pending)
                pending = b""
        elif pending and now - pending_since >= PARTIAL_FLUSH_S:
            writer.write(pending)  # a line without its end yet (progress bar)
            pending = b""
        if writer.fd >= 0:
            writer.maybe_rotate()
    if pending:
        writer.write(pending)
    if writer.fd >= 0:
        writer.maybe_rotate()
    writer.close()
    return 0


def _parse(argv: list[str]) -> tuple[Path, int, int, bool]:
    # Hand-rolled (no argparse): this process starts once per service, keep it lean.
    opts = {"--file": "", "--max-bytes": "52428800", "--keep": "5"}
    redact = False
    it = iter(argv)
    for arg in it:
        if arg == "--redact-prompts":
            redact = True
            continue
        if arg not in opts:
            raise SystemExit(f"logwriter: unknown argument {arg!r}")
        opts[arg] = next(it, "")
    if not opts["--file"]:
        raise SystemExit("logwriter: --file is required")
    try:
        return Path(opts["--file"]), int(opts["--max-bytes"]), int(opts["--keep"]), redact
    except ValueError:
        raise SystemExit("logwriter: --max-bytes and --keep take whole numbers") from None


def main(argv: list[str] | None = None) -> int:
    log_file, max_bytes, keep, redact = _parse(sys.argv[1:] if argv is None else argv)
    return run(log_file.absolute(), max_bytes, keep, redact_prompts=redact)


if __name__ == "__main__":
    sys.exit(main())
