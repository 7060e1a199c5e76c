"""Per-tier request and fallback counts since the gateway started, saved for `status`.

The proxy's event loop only bumps integers; a snapshot reaches disk at most once per
``interval`` seconds (atomically, off the event loop), so counting costs the hot path
nothing measurable. `status` reads the file; its ``pid`` says which gateway wrote it.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

COUNTS_SCHEMA = 1
KINDS = ("requests", "errors", "fallbacks_from", "fallbacks_to")


class Counters:
    """Counts per tier: ``requests`` served, ``errors``, ``fallbacks_from`` (handed on),
    ``fallbacks_to`` (taken over), and ``auto`` decisions per tier and reason."""

    def __init__(self, *, wall: Callable[[], float] = time.time, pid: int | None = None):
        self.started_at = wall()
        self.pid = os.getpid() if pid is None else pid
        self._wall = wall
        self.tiers: dict[str, Counter[str]] = {}
        self.auto: Counter[str] = Counter()
        self.auto_reasons: Counter[str] = Counter()
        self.version = 0  # bumped on every change; the writer compares it

    def _bump(self, tier: str, kind: str) -> None:
        self.tiers.setdefault(tier, Counter())[kind] += 1
        self.version += 1

    def served(self, tier: str) -> None:
        self._bump(tier, "requests")

    def failed(self, tier: str) -> None:
        self._bump(tier, "errors")

    def fell_back(self, from_tier: str, to_tier: str | None) -> None:
        self._bump(from_tier, "fallbacks_from")
        if to_tier:
            self._bump(to_tier, "fallbacks_to")

    def routed_auto(self, tier: str, reason: str) -> None:
        self.auto[tier] += 1
        self.auto_reasons[reason] += 1
        self.version += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "schema": COUNTS_SCHEMA,
            "pid": self.pid,
            "started_at": self.started_at,
            "updated_at": self._wall(),
            "tiers": {name: {k: c[k] for k in KINDS} for name, c in sorted(self.tiers.items())},
            "auto": dict(sorted(self.auto.items())),
            "auto_reasons": dict(sorted(self.auto_reasons.items())),
        }


class CountsWriter:
    """Writes snapshots of ``counters`` to ``path``, at most once per ``interval`` seconds."""

    def __init__(self, counters: Counters, path: Path, *, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.counters = counters
        self.path = path
        self.interval = interval
        self._clock = clock
        self._written_version = -1
        self._last_write = float("-inf")

    def due(self) -> bool:
        """True when there is something new and the last write is ``interval`` old."""
        return (self.counters.version != self._written_version
                and self._clock() - self._last_write >= self.interval)

    def write(self) -> None:
        """Write the current snapshot now (call off the event loop: it fsyncs)."""
        from mlx_stack.system.fs import atomic_write

        version = self.counters.version
        atomic_write(self.path, json.dumps(self.counters.snapshot(), indent=1) + "\n")
        self._written_version = version
        self._last_write = self._clock()


def read_counts(path: Path) -> dict[str, Any] | None:
    """The saved snapshot, or None when missing or unreadable (status shows no counts)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != COUNTS_SCHEMA:
        return None
    return data


class Flusher:
    """Drives a :class:`CountsWriter` from an asyncio loop: one pending write at a time,
    delayed to respect the interval, run in the default executor (never on the loop)."""

    def __init__(self, writer: CountsWriter):
        self.writer = writer
        self._pending = False

    def changed(self, loop: Any) -> None:
        """Call on the loop after every count change."""
        if self._pending:
            return
        self._pending = True
        delay = max(0.0, self.writer.interval - (self.writer._clock() - self.writer._last_write))
        loop.call_later(delay, self._start, loop)

    def _start(self, loop: Any) -> None:
        loop.run_in_executor(None, self._write, loop)

    def _write(self, loop: Any) -> None:
        try:
            self.writer.write()
        except OSError:
            pass  # a full or read-only disk must not break serving; the next change retries
        finally:
            loop.call_soon_threadsafe(self._done, loop)

    def _done(self, loop: Any) -> None:
        self._pending = False
        if self.writer.counters.version != self.writer._written_version:
            self.changed(loop)  # changes that arrived during the write
