"""The front door's bounds: client connections and per-tier concurrency.

- :class:`Connections` wraps the ASGI server's protocol (any class uvicorn takes): a
  connection must complete a request head within ``IDLE_S`` of connecting or of its last
  answer, else it is closed (silent and slow-header connections do not pile up; uvicorn
  alone closes neither). At most ``max_open`` are open: a new one past that closes the
  oldest idle one, or is refused when all are busy.
- :class:`Gate` bounds one tier: ``limit`` requests in flight, ``queue`` more waiting;
  past that the front door answers 429 with ``Retry-After`` at once instead of piling
  requests onto a tier that cannot take them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Sequence
from typing import Any, cast

log = logging.getLogger("mlx_stack.front_door")



def _env(name: str, default: float) -> float:
    """A bound from the environment (MLX_STACK_GATEWAY_*), else ``default``; nonsense ignored."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if 0 < value < 1e9 else default


# Defaults, each overridable by the environment of the front door process (README).
IDLE_S = _env("MLX_STACK_GATEWAY_IDLE_S", 10.0)  # no request under way this long: closed
MAX_OPEN = int(_env("MLX_STACK_GATEWAY_MAX_CONNECTIONS", 4096))  # client connections open at once
TIER_LIMIT = int(_env("MLX_STACK_GATEWAY_TIER_LIMIT", 64))  # requests in flight per tier
TIER_QUEUE = int(_env("MLX_STACK_GATEWAY_TIER_QUEUE", 256))  # requests waiting per tier beyond that
SWEEP_S = 1.0


class _Conn:
    __slots__ = ("busy", "since", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.since = time.monotonic()  # connected, or its last answer ended
        self.busy = 0  # requests under way on it


class Connections:
    """Open client connections, keyed by the peer address the ASGI scope names."""

    def __init__(self, max_open: int = MAX_OPEN, idle_s: float = IDLE_S) -> None:
        self.max_open = max_open
        self.idle_s = idle_s
        self.open: dict[object, _Conn] = {}
        self.refused = 0
        self.closed_idle = 0
        self._sweeper: asyncio.TimerHandle | None = None

    # --- the protocol side --------------------------------------------------------------

    def protocol(self, inner: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
        """A protocol class for the ASGI server: ``inner``'s behaviour, with this guard."""
        guard = self

        class Guarded(asyncio.Protocol):
            __slots__ = ("_inner", "_peer")

            def __init__(self, *args: Any, **kwargs: Any) -> None:  # Any: the server's own arguments
                self._inner = inner(*args, **kwargs)
                self._peer: object = None

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self._peer = guard.opened(cast("asyncio.Transport", transport))
                self._inner.connection_made(transport)

            def data_received(self, data: bytes) -> None:
                self._inner.data_received(data)

            def eof_received(self) -> bool | None:
                return self._inner.eof_received()

            def connection_lost(self, exc: Exception | None) -> None:
                guard.open.pop(self._peer, None)
                self._inner.connection_lost(exc)

            def pause_writing(self) -> None:
                self._inner.pause_writing()

            def resume_writing(self) -> None:
                self._inner.resume_writing()

        return Guarded

    def opened(self, transport: asyncio.Transport) -> object:
        peer = transport.get_extra_info("peername")
        # (host, port), as the ASGI scope names the client (IPv6 peernames have 4 parts)
        key: object = tuple(cast("Sequence[object]", peer)[:2]) if isinstance(peer, (list, tuple)) \
            else (id(transport),)
        if len(self.open) >= self.max_open and not self._evict():
            self.refused += 1
            transport.abort()
            return key
        self.open[key] = _Conn(transport)
        if self._sweeper is None:
            self._schedule()
        return key

    def _evict(self) -> bool:
        """Close the connection idle the longest; False when every one is busy."""
        idle = [c for c in self.open.values() if not c.busy]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.since)
        oldest.transport.abort()
        self.closed_idle += 1
        return True

    def _schedule(self) -> None:
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        cutoff = time.monotonic() - self.idle_s
        for c in [c for c in self.open.values() if not c.busy and c.since < cutoff]:
            c.transport.abort()
            self.closed_idle += 1
        if self.open:
            self._schedule()

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    # --- the application side -------------------------------------------------------------

    def begin(self, client: object) -> _Conn | None:
        """A request started on ``client``'s connection (the scope's ``client``)."""
        c = self.open.get(tuple(cast("Sequence[object]", client)[:2]) if isinstance(client, (list, tuple))
                          else client)
        if c is not None:
            c.busy += 1
        return c

    @staticmethod
    def end(c: _Conn | None) -> None:
        if c is not None:
            c.busy -= 1
            c.since = time.monotonic()

    @property
    def busy(self) -> int:
        return sum(1 for c in self.open.values() if c.busy)


class Full(Exception):
    """The tier's queue is full."""


class Gate:
    """At most ``limit`` requests in flight on one tier, ``queue`` more waiting in order."""

    __slots__ = ("inflight", "limit", "queue", "waiting")

    def __init__(self, limit: int = TIER_LIMIT, queue: int = TIER_QUEUE) -> None:
        self.limit = limit
        self.queue = queue
        self.inflight = 0
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def enter(self) -> None:
        """Wait for a place (raises :class:`Full` at once when the queue is full)."""
        if self.inflight < self.limit and not self.waiting:
            self.inflight += 1
            return
        if len(self.waiting) >= self.queue:
            raise Full
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        try:
            await fut  # the place is handed over by leave(): inflight already counts it
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.leave()  # handed a place just as it was cancelled: pass it on
            else:
                self.waiting.remove(fut)
            raise

    def leave(self) -> None:
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.inflight -= 1
