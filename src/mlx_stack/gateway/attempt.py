"""One attempt on one upstream: the request sent, the answer read up to its first content.

An attempt fails (and the next candidate gets the request) only server-side and only
before the first byte: refused or reset connection, a 5xx, or no first byte within
the deadline *and* no answer on the upstream's health route (a busy tier that still
answers its health check is waited for; a frozen one is left). A 4xx is an answer:
it goes back to the client untouched.

After the first byte has gone to the client nothing can be retried: a stream cut by
its tier ends with a well-formed error event (:func:`error_event`: OpenAI
``data: {"error": ...}``, Anthropic and Responses ``event: error``), or goes on on the
next tier (:mod:`mlx_stack.gateway.continuation`).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from mlx_stack.gateway.h1 import RelayError, Response
from mlx_stack.gateway.upstream import Pool

T = TypeVar("T")
RECHECK_S = 5.0  # while a busy tier still answers its health check, look again this often
# The longest any single wait may last (a long non-streaming generation included), as
# LiteLLM allowed before; a frozen tier is found much sooner through its health route.
READ_LIMIT_S = 600.0
HOLD_LIMIT = 256 * 1024  # a stream's opening events held back while waiting for content
ERROR_BODY_LIMIT = 64 * 1024


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
