"""The one relay loop: every upstream body that reaches a client is copied here.

A plain answer (read whole by :func:`~mlx_stack.gateway.attempt.attempt`), a stream, and
the rest of a cut chat stream continued on another tier (its chunks translated on the
way) all go through :class:`Relay`, which owns what every copy needs: the stall watch
(the pool's monitor cuts a tier silent for too long that stops answering its health
route), the client's departure, and the accounting (bytes sent, content events, the
usage the stream's last events carry).

Two drivers feed the same per-chunk step (:meth:`Relay._take`): on uvicorn's httptools
server each piece the upstream protocol parses is written to the client's transport from
that same callback (:meth:`Relay._piped`: no task wakes per chunk, no ASGI message is
built); under any other ASGI server, one read and one ASGI message per piece
(:meth:`Relay._looped`). A client that leaves cancels the request (the front door watches
``receive``; see :func:`mlx_stack.gateway.chain.watched`) and the piped driver also sees it
on uvicorn's cycle; either way the upstream connection is closed on the way out, so the
tier stops generating.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from mlx_stack.gateway.h1 import RelayError, Response
from mlx_stack.gateway.upstream import Pool, StreamWatch

if TYPE_CHECKING:
    from mlx_stack.gateway.asgi import Send

log = logging.getLogger("mlx_stack.front_door")
# The fast path can be turned off (MLX_STACK_GATEWAY_PIPED=0): the portable path then
# serves every stream, as it does under any ASGI server other than uvicorn's httptools.
PIPED = os.environ.get("MLX_STACK_GATEWAY_PIPED", "1") != "0"

# The usage a stream's last events carry (OpenAI with usage, Anthropic message_delta);
# without it, one delta event counts as one token (vllm-mlx sends a chunk per token).
_USAGE = re.compile(rb'"(?:completion|output)_tokens":\s*(\d+)')


@dataclass(frozen=True)
class Copied:
    """What one copy did: ``tokens`` (the usage the stream reported, else its content
    events), ``sent`` (body bytes written), ``cut`` (why the upstream stopped mid-body, or
    None) and ``gone`` (the client left first)."""

    tokens: int
    sent: int
    cut: str | None
    gone: bool


async def send_whole(send: Send, body: bytes) -> Copied:
    """A plain answer's body (already read whole), as the last body message."""
    await send({"type": "http.response.body", "body": body})
    return Copied(0, len(body), None, False)


class Relay:
    """Copies one upstream stream to the client (the response head already sent); the
    caller ends the body (the last, empty message, or a continuation first).

    ``tap`` sees every upstream chunk as it arrived (a chat stream keeps its text for a
    continuation); ``transform`` turns each one into what the client gets (a continuation's
    completion chunks become chat chunks; b"" sends nothing)."""

    __slots__ = ("conn", "cycle", "gone", "last", "pool", "prev", "sent", "tap", "tokens", "transform",
                 "watch", "write")

    def __init__(self, pool: Pool, conn: Response, *, tap: Callable[[bytes], None] | None = None,
                 transform: Callable[[bytes], bytes] | None = None) -> None:
        self.pool, self.conn, self.tap, self.transform = pool, conn, tap, transform
        self.watch: StreamWatch | None = None
        self.cycle: Any = None  # uvicorn's response cycle on the piped path (see _uvicorn_cycle)
        self.write: Callable[[bytes], object] | None = None
        self.tokens = self.sent = 0
        self.last = self.prev = b""
        self.gone = False

    def _take(self, chunk: bytes) -> bytes:
        """One upstream chunk: the stall watch fed, counted, tapped; what the client gets."""
        watch = self.watch
        if watch is not None:
            watch.last = time.monotonic()
        self.tokens += chunk.count(b'"delta"')  # every content event of the three dialects has one
        if self.tap is not None:
            self.tap(chunk)
        self.prev, self.last = self.last, chunk
        out = chunk if self.transform is None else self.transform(chunk)
        self.sent += len(out)
        return out

    async def run(self, first: bytes, send: Send) -> Copied:
        """``first`` (what the attempt read up to the first content), then the rest, until
        the body ends, the upstream is cut, or the client leaves."""
        pool, conn = self.pool, self.conn
        self.watch = pool.watch_stream(conn)
        cut: str | None = None
        try:
            out = self._take(first)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            cycle = _uvicorn_cycle(send)
            self.gone = await (self._piped(cycle, send) if cycle is not None else self._looped(send))
        except RelayError as exc:
            log.error("relay failed on %s: %s", pool.name, exc)
            cut = f"{exc}"
        except OSError as exc:  # UpstreamError included
            cut = str(exc) or type(exc).__name__
        finally:  # also when cancelled (the client left): the tier stops
            pool.streams.discard(self.watch)
            conn.release()  # back to the pool if read to its end (and clean), else closed
        found = _USAGE.findall(self.prev[-512:] + self.last)
        tokens = int(found[-1]) if found else self.tokens
        return Copied(tokens, self.sent, None if self.gone else cut, self.gone)

    # --- the portable driver -----------------------------------------------------------------

    async def _looped(self, send: Send) -> bool:
        conn = self.conn
        while chunk := await conn.read_chunk():
            out = self._take(chunk)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
        return False

    # --- the piped driver (uvicorn's httptools server) ---------------------------------------

    def _sink(self, chunk: bytes) -> None:
        cycle = self.cycle
        if cycle.disconnected:
            self.gone = True
            self.conn.pause()
            return
        out = self._take(chunk)
        if out and self.write is not None:
            self.write(b"%x\r\n%b\r\n" % (len(out), out))  # framed as uvicorn frames a chunked body
        if cycle.flow.write_paused:
            self.conn.pause()

    async def _piped(self, cycle: Any, send: Send) -> bool:  # cycle: see _uvicorn_cycle
        """Until the body ended (False) or the client went away (True); the task sleeps until
        then, or until a full client buffer (then it waits on uvicorn's own flow control)."""
        self.cycle, self.write = cycle, cycle.transport.write
        conn = self.conn
        conn.pipe(self._sink)
        while True:
            await conn.wait_end()
            if self.gone or cycle.disconnected:
                return True
            if conn.complete:
                return False
            # paused on a full client buffer: uvicorn's send waits for it to drain
            await send({"type": "http.response.body", "body": b"", "more_body": True})
            conn.resume()


# What the fast path reads of uvicorn's httptools response cycle: checked (with their
# types) before it is used, so a uvicorn that renamed any of them takes the portable path.
_CYCLE_ATTRS = ("chunked_encoding", "response_started", "response_complete", "disconnected")


def _uvicorn_cycle(send: Send) -> Any:
    """uvicorn's httptools response cycle behind ``send``, when the response is chunked and
    under way: its transport takes the stream's pieces directly (see :meth:`Relay._piped`).
    None (the portable path) for any other server, or a uvicorn whose cycle looks different."""
    # Any: uvicorn's RequestResponseCycle, a private class whose attributes are not typed.
    cycle: Any = getattr(send, "__self__", None)
    if cycle is None or type(cycle).__module__ != "uvicorn.protocols.http.httptools_impl" or not PIPED:
        return None
    try:
        if not all(isinstance(getattr(cycle, a), bool) for a in _CYCLE_ATTRS):
            return None
        flow, transport, scope = cycle.flow, cycle.transport, cycle.scope
        if not (isinstance(flow.write_paused, bool) and callable(transport.write)
                and callable(getattr(flow, "drain", None)) and isinstance(scope, dict)):
            return None
    except AttributeError:
        return None
    if cycle.chunked_encoding is not True or not cycle.response_started or cycle.response_complete \
            or cast("dict[str, object]", scope).get("method") == "HEAD":
        return None
    return cycle
