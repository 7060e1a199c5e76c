"""One pooled HTTP client per upstream (a tier, or LiteLLM for the cloud), and its cool-down.

A failed upstream (refused, reset, 5xx, frozen) is skipped for a short cool-down: a
background task polls its health route and puts it back as soon as it answers, so a
frozen tier costs one request a few seconds, not every request. Streams being relayed
are watched by one task per upstream: a tier silent for ``STREAM_STALL_S`` that does not
answer its health route is taken as frozen and its streams are cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from urllib.parse import urlsplit

from mlx_stack.core.front_door import Upstream
from mlx_stack.gateway import h1

log = logging.getLogger("mlx_stack.front_door")

HEALTH_TIMEOUT_S = 3.0  # a tier that cannot answer /health in this long is taken as frozen
COOL_POLL_S = 0.5  # how often a cooling upstream is re-checked
STREAM_STALL_S = 10.0
STALL_CHECK_S = 1.0
CONNECT_S = 5.0


class StreamWatch:
    """One stream being relayed: its connection and when its last chunk came."""

    __slots__ = ("conn", "last")

    def __init__(self, conn: h1.Response) -> None:
        self.conn = conn
        self.last = time.monotonic()


class Pool:
    """The client of one upstream; ``cooling`` while it is known to have failed."""

    def __init__(self, upstream: Upstream, *, health_route: str = "/health",
                 auth: str | None = None, headers: list[tuple[bytes, bytes]] | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream
        self.health_route = health_route
        url = urlsplit(upstream.url)
        sent = [(b"authorization", f"Bearer {auth}".encode())] if auth else []
        self.http = h1.Pool(url.hostname or "127.0.0.1", url.port or (443 if tls else 80),
                            headers=sent + (headers or []), connect_timeout=CONNECT_S, tls=tls)
        self.url = upstream.url
        self.cooling = False
        self.cooling_since = 0.0
        self._watch: asyncio.Task[None] | None = None
        self.streams: set[StreamWatch] = set()
        self._monitor: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.upstream.name

    async def alive(self, timeout: float = HEALTH_TIMEOUT_S) -> bool:
        """True when the upstream answers its health route (200) within ``timeout``."""
        try:
            return await asyncio.wait_for(self._health(), timeout)
        except (TimeoutError, OSError):
            return False

    async def fetch(self, route: str, timeout: float = 1.0) -> bytes | None:
        """GET ``route`` on its own short-lived connection: the body of a 200, else None."""
        async def get() -> bytes | None:
            conn = await self.http.send(b"GET", route, fresh=True)
            try:
                await conn.head
                body = await conn.read_all()
            finally:
                conn.abort()
            return body if conn.status == 200 else None

        try:
            return await asyncio.wait_for(get(), timeout)
        except (TimeoutError, OSError):
            return None

    async def _health(self) -> bool:
        conn = await self.http.send(b"GET", self.health_route, fresh=True)
        try:
            await conn.head
            await conn.read_all()
        except BaseException:
            conn.abort()
            raise
        conn.abort()  # health checks use their own short-lived connection
        return conn.status == 200

    def failed(self, why: str) -> None:
        """Start (or keep) the cool-down; a background task ends it when health answers."""
        if self.cooling:
            return
        self.cooling = True
        self.cooling_since = time.monotonic()
        self.http.close()  # pooled connections to a failed upstream are suspect
        log.warning("%s failed (%s): skipped until its health check answers", self.name, why)
        self._watch = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(COOL_POLL_S)
            if await self.alive():
                self.cooling = False
                log.warning("%s answers again after %.1f s", self.name, time.monotonic() - self.cooling_since)
                return

    def watch_stream(self, conn: h1.Response) -> StreamWatch:
        """Register a stream being read from ``conn``; a monitor cuts it (its reader then gets
        an UpstreamError) if the tier goes silent and stops answering its health route. The
        reader unregisters it (``streams.discard``) when done."""
        watch = StreamWatch(conn)
        self.streams.add(watch)
        if self._monitor is None or self._monitor.done():
            self._monitor = asyncio.get_running_loop().create_task(self._monitor_streams())
        return watch

    async def _monitor_streams(self) -> None:
        while self.streams:
            await asyncio.sleep(STALL_CHECK_S)
            now = time.monotonic()
            stalled = [w for w in self.streams if now - w.last > STREAM_STALL_S]
            if stalled and not await self.alive():
                why = f"silent for {STREAM_STALL_S:.0f} s and no answer to its health check"
                for w in stalled:
                    if w in self.streams:  # still being read (not finished during the check)
                        w.conn.cut(why)

    async def close(self) -> None:
        for task in (self._monitor, self._watch):
            if task is not None:
                task.cancel()
        with contextlib.suppress(Exception):
            self.http.close()
