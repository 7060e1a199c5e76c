"""Ctrl-C and SIGTERM during a command that starts things (`up`, `setup`, `pull`).

Both signals raise KeyboardInterrupt in the main thread at once (Python's default
for SIGTERM would end the process without unwinding, leaving what it started
running) and set :data:`cancelled`, which worker threads poll to give up their waits.
Clean-up then runs with both signals ignored, so a second Ctrl-C cannot cut it short.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Generator

cancelled = threading.Event()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def signals_raise() -> Generator[None, None, None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt (main thread only; elsewhere a no-op)."""
    if not _main_thread():
        yield
        return

    def _raise(_signum: int, _frame: object) -> None:
        cancelled.set()
        raise KeyboardInterrupt

    cancelled.clear()
    previous = {sig: signal.signal(sig, _raise) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_ignored() -> Generator[None, None, None]:
    """Clean-up that must finish: SIGINT and SIGTERM are ignored meanwhile."""
    if not _main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def sigterm_raises(error: Callable[[], BaseException]) -> Generator[None, None, None]:
    """SIGTERM raises ``error()`` in the main thread (elsewhere a no-op), so a command
    that started something unwinds and stops it; SIGINT keeps its KeyboardInterrupt."""
    if not _main_thread():
        yield
        return

    def _raise(_signum: int, _frame: object) -> None:
        raise error()

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
