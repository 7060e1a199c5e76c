"""The front door's own rules, piece by piece: the upstream client's connection hygiene at
the byte level, the bounds (connections, tier queues), the relay's fallback off uvicorn's
internals, and what it refuses before any tier sees it."""

from __future__ import annotations

import asyncio
import types

import pytest

from mlx_stack.core.controls import escape_controls
from mlx_stack.core.front_door import shape_problem
from mlx_stack.gateway import attempt, h1, relay
from mlx_stack.gateway.limits import Connections, Full, Gate
from mlx_stack.gateway.request import parse_body

STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


async def _server(answers: list[bytes]) -> tuple[asyncio.Server, list[int]]:
    """A raw upstream: for each request on a connection, writes the next answer in one piece."""
    requests: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            requests.append(len(requests))
            writer.write(answers[min(len(requests) - 1, len(answers) - 1)])
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, requests


def test_a_connection_released_while_paused_is_resumed_before_reuse() -> None:
    """The bug behind the 600 s hangs: a client left at the end of a stream, reading was
    paused, the answer completed in the same read, and the connection went back to the
    pool still paused; the next request on it never saw its head."""
    async def main() -> None:
        stream = STREAM_HEAD + _chunk(b'data: {"finish_reason":"stop"}\n\n') + _chunk(b"data: [DONE]\n\n") \
            + b"0\r\n\r\n"
        plain = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        server, requests = await _server([stream, plain])
        port = server.sockets[0].getsockname()[1]
        pool = h1.Pool("127.0.0.1", port)
        conn = await pool.request(b"POST", "/v1/chat/completions", b"{}")
        conn.pipe(lambda chunk: conn.pause())  # the client is gone: the relay pauses reading
        await conn.wait_end()
        await asyncio.sleep(0.05)  # the rest of the answer arrives
        conn.release()
        again = await asyncio.wait_for(pool.request(b"POST", "/v1/chat/completions", b"{}"), 2)
        assert again is conn and await asyncio.wait_for(again.read_all(), 2) == b"{}"
        assert requests == [0, 1]
        server.close()

    asyncio.run(main())


def test_a_connection_not_read_to_its_end_is_closed_not_pooled() -> None:
    async def main() -> None:
        stream = STREAM_HEAD + _chunk(b"data: one\n\n")  # and never more
        server, _ = await _server([stream])
        pool = h1.Pool("127.0.0.1", server.sockets[0].getsockname()[1])
        conn = await pool.request(b"POST", "/x", b"{}")
        assert await conn.read_chunk() == b"data: one\n\n"
        conn.release()
        assert pool.idle == [] and conn.transport is not None and conn.transport.is_closing()
        server.close()

    asyncio.run(main())


def test_the_idle_pool_is_bounded() -> None:
    async def main() -> None:
        plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
        server, _ = await _server([plain])
        pool = h1.Pool("127.0.0.1", server.sockets[0].getsockname()[1])
        conns = [await pool.send(b"POST", "/x", b"{}", fresh=True) for _ in range(h1.MAX_IDLE + 5)]
        for c in conns:
            await c.head
            await c.read_all()
        for c in conns:
            c.release()
        assert len(pool.idle) == h1.MAX_IDLE
        pool.close()
        server.close()

    asyncio.run(main())


def test_a_stalled_stream_is_cut_with_its_reason() -> None:
    async def main() -> None:
        server, _ = await _server([STREAM_HEAD + _chunk(b"data: one\n\n")])
        pool = h1.Pool("127.0.0.1", server.sockets[0].getsockname()[1])
        conn = await pool.request(b"POST", "/x", b"{}")
        await conn.read_chunk()
        asyncio.get_running_loop().call_later(0.05, conn.cut, "silent for 10 s")
        with pytest.raises(h1.UpstreamError, match="silent for 10 s"):
            await conn.read_chunk()
        server.close()

    asyncio.run(main())


def test_the_gate_bounds_in_flight_and_queue_and_hands_places_on() -> None:
    async def main() -> None:
        gate = Gate(limit=2, queue=1)
        await gate.enter()
        await gate.enter()
        waiter = asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)
        with pytest.raises(Full):
            await gate.enter()
        gate.leave()  # the waiter gets the place
        await asyncio.wait_for(waiter, 1)
        assert (gate.inflight, len(gate.waiting)) == (2, 0)
        cancelled = asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)
        cancelled.cancel()  # a client that left while waiting gives its place up
        await asyncio.sleep(0)
        assert len(gate.waiting) == 0
        gate.leave()
        gate.leave()
        assert gate.inflight == 0

    asyncio.run(main())


class _Transport:
    def __init__(self, port: int) -> None:
        self.port = port
        self.aborted = False

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", self.port) if name == "peername" else None

    def abort(self) -> None:
        self.aborted = True


def test_past_the_connection_cap_the_oldest_idle_connection_is_closed() -> None:
    async def main() -> None:
        guard = Connections(max_open=3, idle_s=60)
        ts = [_Transport(p) for p in range(5)]
        for t in ts[:3]:
            guard.opened(t)  # type: ignore[arg-type]
        busy = guard.begin(("127.0.0.1", 0))  # the oldest has a request under way: kept
        guard.opened(ts[3])  # type: ignore[arg-type]
        assert not ts[0].aborted and ts[1].aborted
        guard.end(busy)
        guard.stop()

    asyncio.run(main())


def test_when_every_connection_is_busy_a_new_one_is_refused() -> None:
    async def main() -> None:
        guard = Connections(max_open=1, idle_s=60)
        first, second = _Transport(1), _Transport(2)
        guard.opened(first)  # type: ignore[arg-type]
        guard.begin(("127.0.0.1", 1))
        guard.opened(second)  # type: ignore[arg-type]
        assert second.aborted and not first.aborted and guard.refused == 1
        guard.stop()

    asyncio.run(main())


def test_idle_connections_are_swept() -> None:
    async def main() -> None:
        guard = Connections(max_open=10, idle_s=0.05)
        t = _Transport(1)
        guard.opened(t)  # type: ignore[arg-type]
        await asyncio.sleep(1.2)
        assert t.aborted
        guard.stop()

    asyncio.run(main())


def _fake_cycle(**attrs: object) -> object:
    cls = type("RequestResponseCycle", (), {"__module__": "uvicorn.protocols.http.httptools_impl"})
    cycle = cls()
    for k, v in attrs.items():
        setattr(cycle, k, v)
    return cycle


def test_the_fast_path_is_taken_only_when_uvicorns_cycle_looks_as_tested() -> None:
    good = dict(chunked_encoding=True, response_started=True, response_complete=False, disconnected=False,
                flow=types.SimpleNamespace(write_paused=False, drain=lambda: None),
                transport=types.SimpleNamespace(write=lambda data: None), scope={"method": "POST"})
    cycle = _fake_cycle(**good)
    send = types.MethodType(lambda self, message: None, cycle)
    assert relay._uvicorn_cycle(send) is cycle
    for missing in ("disconnected", "flow", "chunked_encoding"):
        renamed = _fake_cycle(**{k: v for k, v in good.items() if k != missing})
        assert relay._uvicorn_cycle(types.MethodType(lambda self, message: None, renamed)) is None
    odd = _fake_cycle(**{**good, "disconnected": "no"})
    assert relay._uvicorn_cycle(types.MethodType(lambda self, message: None, odd)) is None


@pytest.mark.parametrize("raw, why", [
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b'{"x": NaN}', "NaN is not valid JSON"),
    (b'{"x": -Infinity}', "-Infinity is not valid JSON"),
    (b'{"x": "\\udfff"}', "lone UTF-16 surrogate"),
    (b"[]", "must be a JSON object"),
    (b"\xc3\x28", "not valid JSON"),
])
def test_bodies_that_are_refused(raw: bytes, why: str) -> None:
    data, problem = parse_body(raw)
    assert data is None and problem is not None and why in problem


def test_a_surrogate_pair_is_fine() -> None:
    data, problem = parse_body(b'{"x": "\\ud83d\\ude00"}')
    assert problem is None and data == {"x": "\U0001f600"}


@pytest.mark.parametrize("body, why", [
    ({"model": ["a"], "messages": [{}]}, "`model` must be a non-empty string"),
    ({"messages": [{}]}, "names no model"),
    ({"model": "a", "messages": [{}], "max_tokens": 0}, "`max_tokens` must be a positive integer"),
    ({"model": "a", "messages": [{}], "max_tokens": True}, "`max_tokens` must be a positive integer"),
    ({"model": "a", "messages": [{}], "max_tokens": 2.5}, "`max_tokens` must be a positive integer"),
    ({"model": "a", "messages": [{}], "max_completion_tokens": -1}, "`max_completion_tokens`"),
    ({"model": "a", "messages": [{}], "max_tokens": 10**12}, "at most"),
])
def test_shapes_the_tiers_would_fail_on(body: dict, why: str) -> None:
    problem = shape_problem("/v1/chat/completions", body)
    assert problem is not None and why in problem


def test_anthropic_max_tokens_null_is_refused_but_openai_null_is_fine() -> None:
    body = {"model": "a", "messages": [{}], "max_tokens": None}
    assert shape_problem("/v1/messages", body) is not None
    assert shape_problem("/v1/chat/completions", body) is None


def test_log_text_escapes_every_control_character_and_lone_surrogates() -> None:
    text = escape_controls("a\nb\rc\x00d\x1b[31me\x85f\ud800g", one_line=True)
    assert text == "a\\nb\\rc\\x00d\\x1b[31me\\x85f\\ud800g"
    assert text.encode("utf-8")  # a UTF-8 log can take it


def test_output_limits_above_what_a_tier_takes_are_lowered() -> None:
    from mlx_stack.core.front_door import TIER_OUTPUT_LIMIT, clamp_output

    body = {"model": "claude-opus-4-8", "max_tokens": 64000, "messages": []}
    lowered = clamp_output(body)
    assert lowered is not None and lowered["max_tokens"] == TIER_OUTPUT_LIMIT and body["max_tokens"] == 64000
    assert clamp_output({"max_tokens": 100, "max_output_tokens": None}) is None
    assert clamp_output({"max_output_tokens": 10**6}) == {"max_output_tokens": TIER_OUTPUT_LIMIT}


def test_what_counts_as_a_streams_first_content() -> None:
    openers = [b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n',
               b'event: message_start\ndata: {"type":"message_start","message":{"content":[]}}\n\n'
               b'event: content_block_start\ndata: {"content_block":{"type":"text","text":""}}\n\n',
               b'event: response.created\ndata: {"response":{"error":null,"text":{"format":{}}}}\n\n']
    for event in openers:
        assert not attempt._CONTENT.search(event), event
    contents = [b'data: {"choices":[{"delta":{"content":"Hi"}}]}', b'data: {"choices":[{"text":"Hi"}]}',
                b'data: {"choices":[{"delta":{"tool_calls":[]}}]}', b'event: content_block_delta',
                b'event: response.output_text.delta', b'data: {"error": {"message": "x"}}', b'data: [DONE]',
                b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}']
    for event in contents:
        assert attempt._CONTENT.search(event), event
