"""One attempt on one upstream, and the relay of a stream to the client.

An attempt fails (and the next upstream gets the request) only server-side and only
before the first byte: refused or reset connection, a 5xx, or no first byte within
the deadline *and* no answer on the upstream's health route (a busy tier that still
answers its health check is waited for; a frozen one is left). A 4xx is an answer:
it goes back to the client untouched.

After the first byte has gone to the client nothing can be retried: a stream cut by
its tier ends with a well-formed error event (OpenAI ``data: {"error": ...}``,
Anthropic and Responses ``event: error``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from mlx_stack.gateway.h1 import RelayError, Response
from mlx_stack.gateway.upstream import Pool, StreamWatch

if TYPE_CHECKING:
    from mlx_stack.gateway.asgi import Send
    from mlx_stack.gateway.continuation import ChatStream

log = logging.getLogger("mlx_stack.front_door")
T = TypeVar("T")
# The fast path can be turned off (MLX_STACK_GATEWAY_PIPED=0): the portable path then
# serves every stream, as it does under any ASGI server other than uvicorn's httptools.
PIPED = os.environ.get("MLX_STACK_GATEWAY_PIPED", "1") != "0"
RECHECK_S = 5.0  # while a busy tier still answers its health check, look again this often


@dataclass
class Failure:
    why: str
    # False when the tier answered (a 5xx for this one request): the tier is not cooled
    # down, and when every tier says so, the client gets ``answer`` back as its error.
    tier_fault: bool = True
    answer: Answer | None = None


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    first: bytes  # the whole body (not a stream), or what a stream sent up to its first content
    stream: bool
    conn: Response | None = None  # a stream's connection, to read the rest from


class Frozen(Exception):
    pass


# The longest any single wait may last (a long non-streaming generation included), as
# LiteLLM allowed before; a frozen tier is found much sooner through its health route.
READ_LIMIT_S = 600.0
HOLD_LIMIT = 256 * 1024  # a stream's opening events held back while waiting for content
ERROR_BODY_LIMIT = 64 * 1024


async def _alive_wait(pool: Pool, aw: Awaitable[T], first_wait: float) -> T:
    """``aw``'s result; after ``first_wait`` s (then every RECHECK_S) the upstream must
    still answer its health route, else :class:`Frozen`."""
    task = asyncio.ensure_future(aw)
    wait = first_wait
    give_up = time.monotonic() + READ_LIMIT_S
    try:
        while True:
            done, _ = await asyncio.wait((task,), timeout=wait)
            if done:
                return task.result()
            if time.monotonic() > give_up:
                raise Frozen(f"no answer within {READ_LIMIT_S:.0f} s")
            if not await pool.alive():
                raise Frozen(f"no answer within {first_wait:.0f} s and no answer to its health check")
            wait = RECHECK_S
    finally:
        if not task.done():
            task.cancel()


_JSON = [(b"content-type", b"application/json")]
# An event that carries generated content (or ends the stream) in any of the stream
# dialects: OpenAI chat and completions, Anthropic messages, Responses. The events before
# it (a role chunk, message_start, response.created) say nothing yet: until one of these
# arrives the stream can still be restarted on the next tier without the client noticing.
_CONTENT = re.compile(
    rb'"(?:content|text|reasoning_content|reasoning|arguments|partial_json|thinking|delta)":\s*"[^"]'
    rb'|"tool_calls"|"finish_reason":\s*"|content_block_delta|message_delta|message_stop'
    rb'|output_text\.delta|function_call_arguments\.delta|response\.completed|response\.failed'
    rb'|"error":\s*[{"]|\[DONE\]')


async def _exchange(pool: Pool, path: str, body: bytes) -> tuple[Response, bytes, bool]:
    """Send ``body``; (the response, what was read, whether it streams): the whole body of a
    plain answer or a 5xx, or a stream's opening up to its first content event. Cancelled
    or failed, the connection is closed (so the tier stops)."""
    conn = await pool.http.request(b"POST", path, body, _JSON)
    try:
        stream = conn.status < 500 and any(
            k == b"content-type" and v.startswith(b"text/event-stream") for k, v in conn.headers)
        if not stream:
            return conn, await conn.read_all(), False
        held = b""
        while chunk := await conn.read_chunk():
            held += chunk
            if _CONTENT.search(held) or len(held) > HOLD_LIMIT or conn.status >= 400:
                break
        return conn, held, True
    except BaseException:
        conn.abort()
        raise


async def attempt(pool: Pool, path: str, body: bytes, deadline: float) -> Answer | Failure:
    """Send ``body`` to ``pool`` and wait for the answer's first content (a stream) or all of
    it, as one wait watched by the tier's health route. Cancelled (the client left): the
    upstream connection is closed, so the tier stops."""
    try:
        conn, data, stream = await _alive_wait(pool, _exchange(pool, path, body), deadline)
    except Frozen as exc:
        return Failure(str(exc))
    except OSError as exc:  # UpstreamError included
        return Failure(str(exc) or type(exc).__name__, tier_fault=not isinstance(exc, RelayError))
    if conn.status >= 500:
        conn.release()
        answer = Answer(conn.status, conn.headers, data[:ERROR_BODY_LIMIT], False)
        return Failure(f"HTTP {conn.status}", tier_fault=False, answer=answer)
    if not stream:
        answer = Answer(conn.status, conn.headers, data, False)
        conn.release()  # back to the pool: reset for its next request
        return answer
    if not data:
        conn.release()
        return Failure("the stream ended before its first byte")
    return Answer(conn.status, conn.headers, data, True, conn)


def error_event(path: str, message: str) -> bytes:
    """A well-formed error event in the stream dialect of ``path``."""
    if path.startswith("/v1/messages"):
        data = {"type": "error", "error": {"type": "api_error", "message": message}}
        return f"event: error\ndata: {json.dumps(data)}\n\n".encode()
    if path == "/v1/responses":
        data = {"type": "error", "code": "upstream_failed", "message": message, "param": None}
        return f"event: error\ndata: {json.dumps(data)}\n\n".encode()
    data = {"error": {"message": message, "type": "server_error", "code": "upstream_failed"}}
    return f"data: {json.dumps(data)}\n\n".encode()


# The usage a stream's last events carry (OpenAI with usage, Anthropic message_delta);
# without it, one delta event counts as one token (vllm-mlx sends a chunk per token).
_USAGE = re.compile(rb'"(?:completion|output)_tokens":\s*(\d+)')
def _count_tokens(chunk: bytes) -> int:
    # One scan per chunk: every content event of the three stream dialects has a "delta"
    # (a few non-content events too: an estimate, used only when no usage arrives).
    return chunk.count(b'"delta"')


def _stream_tokens(counted: int, tail: bytes) -> int:
    found = _USAGE.findall(tail)
    return int(found[-1]) if found else counted


async def relay_stream(pool: Pool, answer: Answer, send: Send, path: str,
                       chat: ChatStream | None = None) -> tuple[int, str | None]:
    """Copy the stream to the client; (content events seen, why it was cut or None).
    When cut, the caller ends the stream (a continuation or the error event); ``chat``
    (a :class:`~mlx_stack.gateway.continuation.ChatStream`) is fed every chunk.

    A client that goes away cancels the request (see ``FrontDoor``): the upstream response
    is closed on the way out, so the tier stops generating. A tier that goes silent and
    stops answering its health route is cut (see ``Pool``).
    """
    conn = answer.conn
    assert conn is not None
    watch = pool.watch_stream(conn)
    cut: str | None = None
    relay: _Piped | _Looped | None = None
    try:
        await send({"type": "http.response.body", "body": answer.first, "more_body": True})
        cycle = _uvicorn_cycle(send)
        relay = (_Piped(conn, cycle, watch, answer.first, chat) if cycle is not None
                 else _Looped(conn, watch, answer.first, chat))
        gone = await relay.run(send)
        if gone:
            return relay.tokens, None
    except RelayError as exc:
        log.error("relay failed on %s: %s", pool.name, exc)
        cut = f"{exc}"
    except OSError as exc:  # UpstreamError included
        cut = str(exc) or type(exc).__name__
    finally:
        pool.streams.discard(watch)
        conn.release()  # back to the pool if read to its end (and clean), else closed
    if relay is None:
        return _count_tokens(answer.first), cut
    if cut is None:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    return _stream_tokens(relay.tokens, relay.prev[-512:] + relay.last), cut


# What the fast path reads of uvicorn's httptools response cycle: checked (with their
# types) before it is used, so a uvicorn that renamed any of them takes the portable path.
_CYCLE_ATTRS = ("chunked_encoding", "response_started", "response_complete", "disconnected")


def _uvicorn_cycle(send: Send) -> Any:
    """uvicorn's httptools response cycle behind ``send``, when the response is chunked and
    under way: its transport takes the stream's pieces directly (see :class:`_Piped`).
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
            or scope.get("method") == "HEAD":
        return None
    return cycle


class _Piped:
    """The hot path: each piece the upstream protocol parses is written to the client's
    transport from that same callback, framed as uvicorn frames a chunked body. No task
    wakes per chunk, no ASGI message is built; the relay task sleeps until the end, a cut,
    or a full client buffer (then it waits on uvicorn's own flow control)."""

    __slots__ = ("chat", "conn", "cycle", "gone", "last", "prev", "tokens", "watch", "write")

    def __init__(self, conn: Response, cycle: Any, watch: StreamWatch, first: bytes,
                 chat: ChatStream | None) -> None:  # cycle: see _uvicorn_cycle
        self.conn, self.cycle, self.watch, self.chat = conn, cycle, watch, chat
        self.write = cycle.transport.write
        self.tokens = _count_tokens(first)
        self.last = self.prev = first
        self.gone = False
        if chat is not None:
            chat.feed(first)

    def _sink(self, chunk: bytes) -> None:
        cycle = self.cycle
        if cycle.disconnected:
            self.gone = True
            self.conn.pause()
            return
        self.watch.last = time.monotonic()
        self.tokens += chunk.count(b'"delta"')
        if self.chat is not None:
            self.chat.feed(chunk)
        self.prev, self.last = self.last, chunk
        self.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        if cycle.flow.write_paused:
            self.conn.pause()

    async def run(self, send: Send) -> bool:
        """Until the body ended (False) or the client went away (True)."""
        conn = self.conn
        conn.pipe(self._sink)
        while True:
            await conn.wait_end()
            if self.gone or self.cycle.disconnected:
                return True
            if conn.complete:
                return False
            # paused on a full client buffer: uvicorn's send waits for it to drain
            await send({"type": "http.response.body", "body": b"", "more_body": True})
            conn.resume()


class _Looped:
    """The portable path (any ASGI server): one read and one ASGI message per piece. A
    client that leaves cancels the request (the front door watches ``receive``)."""

    __slots__ = ("chat", "conn", "last", "prev", "tokens", "watch")

    def __init__(self, conn: Response, watch: StreamWatch, first: bytes, chat: ChatStream | None) -> None:
        self.conn, self.watch, self.chat = conn, watch, chat
        self.tokens = _count_tokens(first)
        self.last = self.prev = first
        if chat is not None:
            chat.feed(first)

    async def run(self, send: Send) -> bool:
        conn, watch, chat = self.conn, self.watch, self.chat
        while chunk := await conn.read_chunk():
            watch.last = time.monotonic()
            self.tokens += _count_tokens(chunk)
            if chat is not None:
                chat.feed(chunk)
            self.prev, self.last = self.last, chunk
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        return False
