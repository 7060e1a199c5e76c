"""A lean HTTP/1.1 client for the front door's upstreams: asyncio protocols and httptools.

Why not httpx: on the 2-core test machine httpx + httpcore + anyio cost the front door
about 1.5 ms of CPU per proxied request, most of the 2 ms budget (profiled). This client
does only what the front door needs: keep-alive connections to one loopback upstream,
a request written in one call, the response head parsed by httptools, the body handed
over in the chunks it arrives in (de-chunked, never decoded or parsed).

A pooled connection that the server already closed fails on first use; the caller
retries once on a fresh one (:attr:`Response.reused` says which it was).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Callable

import httptools

IDLE_S = 4.0  # drop pooled connections idle this long (uvicorn closes them after 5 s)
MAX_BUFFERED = 64  # body chunks held for a slow client before reading pauses
MAX_IDLE = 32  # pooled connections kept per upstream; more are closed when released


class UpstreamError(ConnectionError):
    """The connection failed: refused, reset, or cut mid-answer."""


class RelayError(UpstreamError):
    """The relay itself failed (not the upstream's fault: no cool-down)."""


class Response(asyncio.Protocol):
    """One keep-alive connection; while a request runs, also its response."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.reused = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] = self._loop.create_future()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.complete = False
        self._keep_alive = False
        self._error: Exception | None = None
        self._paused = False
        self._sink: Callable[[bytes], None] | None = None

    # --- protocol callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
            if self._sink is not None and self._chunks:
                # Piped: every piece this read brought goes on in one write (a tier that
                # got ahead of us sent several events; fewer, larger writes under load).
                chunks = self._chunks
                self._sink(chunks.popleft() if len(chunks) == 1 else b"".join(chunks))
                chunks.clear()
        except httptools.HttpParserError as exc:
            self.cut(f"bad HTTP from upstream: {exc}")
        except Exception as exc:  # the sink failed (a bug of ours): end this relay, not the loop
            self.cut(f"relay failed ({type(exc).__name__})", ours=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool.forget(self)
        if not self.complete:
            self._fail(UpstreamError("connection reset" if self.head.done() or self.reused or exc
                                     else "connection closed"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        # Asked here: once the message is complete httptools answers False whatever the
        # server said, and every request would open a new connection to the tier.
        self._keep_alive = self._parser.should_keep_alive()
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(bytes(body))
        if self._sink is not None:  # piped: data_received hands it on, no task wake-up
            return
        if len(self._chunks) > MAX_BUFFERED and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    def _fail(self, exc: Exception) -> None:
        if self._error is None:  # the first cause stays (a cut, then the connection lost)
            self._error = exc
        if not self.head.done():
            self.head.set_exception(exc)
            self.head.exception()  # retrieved: no "never retrieved" warning if nobody waits
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- the caller's side ---------------------------------------------------------------

    async def read_chunk(self) -> bytes:
        """The next piece of the body; b"" at its end. Raises UpstreamError if cut."""
        while True:
            if self._chunks:
                # Everything that arrived since the last read goes on in one piece: under
                # load, fewer and larger writes to the client.
                chunks = self._chunks
                chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return chunk
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            await self._waiter

    def pipe(self, sink: Callable[[bytes], None]) -> None:
        """From now on hand the body to ``sink`` from the protocol callback itself, once per
        read from the socket (what is already buffered first); :meth:`wait_end` waits for
        the end."""
        chunks = self._chunks
        if chunks:
            sink(chunks.popleft() if len(chunks) == 1 else b"".join(chunks))
            chunks.clear()
        self._sink = sink
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def pause(self) -> None:
        """Stop reading from the upstream (the client is slow or gone); wakes :meth:`wait_end`."""
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    async def wait_end(self) -> None:
        """Wait until a piped body ended, was cut (UpstreamError) or reading was paused."""
        if self.complete or self._paused:
            return
        if self._error is not None:
            raise self._error
        self._waiter = self._loop.create_future()
        await self._waiter
        if self._error is not None and not self.complete:
            raise self._error

    async def read_all(self) -> bytes:
        parts: list[bytes] = []
        while chunk := await self.read_chunk():
            parts.append(chunk)
        return b"".join(parts)

    @property
    def clean(self) -> bool:
        """Fit for another request: the answer was read to its end and nothing is left over."""
        return (self.complete and self._error is None and self._keep_alive and not self._chunks
                and self.transport is not None and not self.transport.is_closing())

    def release(self) -> None:
        """Done with the response: back to the pool only in a clean state (read to its end,
        reading resumed), else closed. A connection pooled with reading paused would leave
        the next request on it without an answer."""
        self._sink = None
        if not self.clean or len(self._pool.idle) >= MAX_IDLE:
            self.abort()
            return
        assert self.transport is not None
        if self._paused:
            self.transport.resume_reading()
        self._reset()
        self.idle_since = time.monotonic()
        self._pool.idle.append(self)

    def cut(self, why: str, *, ours: bool = False) -> None:
        """Fail the response now (a stalled or broken upstream) and close the connection."""
        self._fail(RelayError(why) if ours else UpstreamError(why))
        self.abort()

    def abort(self) -> None:
        self._pool.forget(self)
        if self.transport is not None:
            self.transport.abort()


class Pool:
    """Keep-alive connections to one upstream (host, port); unlimited in number."""

    def __init__(self, host: str, port: int, *, headers: list[tuple[bytes, bytes]] | None = None,
                 connect_timeout: float = 5.0, tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.tls = tls  # an https upstream (a peer's front door): TLS with this context
        self._host_header = f"{host}:{port}".encode()
        self._headers = headers or []
        self._connect_timeout = connect_timeout
        self.idle: list[Response] = []

    def forget(self, conn: Response) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    async def _connection(self, fresh: bool) -> Response:
        now = time.monotonic()
        while self.idle and not fresh:
            conn = self.idle.pop()
            usable = conn.transport is not None and not conn.transport.is_closing()
            if usable and now - conn.idle_since < IDLE_S:
                conn.reused = True
                return conn
            conn.abort()
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: Response(self), self.host, self.port, ssl=self.tls,
                                       server_hostname=self.host if self.tls is not None else None),
                self._connect_timeout)
        except ssl.SSLError as exc:  # an https upstream whose certificate or handshake failed
            why = getattr(exc, "verify_message", None) or exc.reason or type(exc).__name__
            raise UpstreamError(f"TLS failed ({why})") from None
        except (OSError, TimeoutError) as exc:
            raise UpstreamError("connection refused" if isinstance(exc, ConnectionRefusedError)
                                else f"cannot connect ({type(exc).__name__})") from None
        return conn

    async def send(self, method: bytes, path: str, body: bytes = b"",
                   headers: list[tuple[bytes, bytes]] | None = None, *, fresh: bool = False) -> Response:
        """Write one request; the returned response's ``head`` resolves when its head arrived."""
        conn = await self._connection(fresh)
        lines = [method, b" ", path.encode(), b" HTTP/1.1\r\nhost: ", self._host_header,
                 b"\r\ncontent-length: ", str(len(body)).encode(), b"\r\n"]
        for name, value in (*self._headers, *(headers or ())):
            lines += [name, b": ", value, b"\r\n"]
        lines += [b"\r\n", body]
        assert conn.transport is not None
        conn.transport.write(b"".join(lines))
        return conn

    async def request(self, method: bytes, path: str, body: bytes = b"",
                      headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        """``send`` and wait for the head; a stale pooled connection is retried once, fresh."""
        conn = await self.send(method, path, body, headers)
        try:
            await conn.head
        except UpstreamError:
            if not conn.reused:
                raise
            conn = await self.send(method, path, body, headers, fresh=True)
            await self._head(conn)
        except BaseException:  # cancelled (a frozen upstream): the connection is unusable
            conn.abort()
            raise
        return conn

    @staticmethod
    async def _head(conn: Response) -> None:
        try:
            await conn.head
        except BaseException:
            conn.abort()
            raise

    def close(self) -> None:
        for conn in list(self.idle):
            conn.abort()
