"""system.http_client against a socket server that answers scripted bytes: every way an
answer can be framed, and the ways one can be broken, cut, slow or too large. (The real
servers, vllm-mlx and the front door, answer it in every integration test.)"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import pytest

from mlx_stack.system import http_client, probes
from mlx_stack.system.http_client import BadAnswer

Script = Callable[[socket.socket, bytes], None]


@contextmanager
def server(script: Script) -> Iterator[tuple[str, list[bytes]]]:
    """A one-connection-at-a-time server: reads the request head (and body), runs ``script``."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.settimeout(0.1)
    seen: list[bytes] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    got = conn.recv(65536)
                    if not got:
                        break
                    data += got
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(rest) < length:
                    rest += conn.recv(65536)
                seen.append(head + b"\r\n\r\n" + rest)
                with suppress(OSError):
                    script(conn, data)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{lsock.getsockname()[1]}", seen
    finally:
        stop.set()
        lsock.close()
        thread.join(5)


def answer(raw: bytes) -> Script:
    return lambda conn, _req: conn.sendall(raw)


def get(url: str, **kw: object) -> tuple[int, bytes]:
    return http_client.request(urlsplit(url), "GET", "/x", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw, body", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nX: y\r\n\r\nhelloEXTRA", b"hello"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
     b"hello world"),
    (b"HTTP/1.0 200 OK\r\n\r\nto the end", b"to the end"),  # no length: the body runs to the close
    (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b""),
])
def test_every_framing_is_read(raw: bytes, body: bytes):
    with server(answer(raw)) as (url, _):
        assert get(url) == (int(raw[9:12]), body)


def test_an_answer_sent_byte_by_byte():
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"

    def slow(conn: socket.socket, _req: bytes) -> None:
        for i in range(len(raw)):
            conn.sendall(raw[i:i + 1])
            time.sleep(0.002)

    with server(slow) as (url, _):
        assert get(url) == (200, b"abc")


@pytest.mark.parametrize("raw", [
    b"",  # closed at once
    b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",  # cut mid-body
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",  # cut mid-chunk
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70_000 + b"\r\n\r\n",  # endless headers
])
def test_a_broken_answer_is_an_oserror(raw: bytes):
    with server(answer(raw)) as (url, _):
        with pytest.raises(BadAnswer) as caught:
            get(url)
        result = probes.health(url)
    assert not result.ok and result.error == str(caught.value)  # said as it is, in status's row


def test_a_too_large_answer_is_refused():
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + b"x" * 300_000
    with server(answer(raw)) as (url, _):
        with pytest.raises(BadAnswer, match="larger than"):
            get(url, limit=100_000)
        assert get(url, limit=300_000)[1] == b"x" * 300_000


def test_a_silent_server_times_out_on_one_deadline():
    def drip(conn: socket.socket, _req: bytes) -> None:  # a byte every 0.2 s: never done
        for _ in range(50):
            conn.sendall(b"H")
            time.sleep(0.2)

    with server(drip) as (url, _):
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            get(url, timeout=0.6)
        assert time.monotonic() - start < 1.5  # the deadline is for the whole answer


def test_refused_and_probe_wording():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        get(f"http://127.0.0.1:{port}")
    result = probes.health(f"http://127.0.0.1:{port}")
    assert not result.ok and result.error == "connection refused"


def test_the_request_on_the_wire():
    with server(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"choices\":[1]}")) as (url, seen):
        result = probes.completion(url, "fast", api_key="sk-1", headers={"x-mlx-stack-probe": "1"})
        assert result.ok
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
    assert not any(line.lower().startswith("connection:") for line in lines)  # we close first
    assert {"Authorization: Bearer sk-1", "x-mlx-stack-probe: 1",
            f"Content-Length: {len(body)}", "Content-Type: application/json"} <= set(lines)
    assert b'"max_tokens": 1' in body


def test_a_header_with_a_line_break_is_not_sent():
    with server(answer(b"HTTP/1.1 200 OK\r\n\r\n")) as (url, seen):
        with pytest.raises(BadAnswer, match="line break"):
            get(url, headers={"Authorization": "Bearer x\r\nX-Evil: 1"})
        result = probes.completion(url, "fast", api_key="k\nX-Evil: 1")
        assert not result.ok
    assert seen == []  # nothing reached the server


@pytest.mark.parametrize("extra, served_by", [
    (b"x-mlx-stack-tier: standard\r\n", "standard"),
    (b"X-MLX-Stack-Tier: fast\r\n", "fast"),
    (b"x-mlx-stack-tier: standard\r\nx-mlx-stack-node: studio\r\n", None),  # a peer's tier: not ours
    (b"", None),
])
def test_the_tier_a_front_door_names(extra: bytes, served_by: str | None):
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n" + extra + b"\r\n{\"choices\":[1]}"
    with server(answer(raw)) as (url, _):
        assert probes.completion(url, "standard").served_by == served_by
    failed = b"HTTP/1.1 500 Oops\r\nContent-Length: 2\r\nx-mlx-stack-tier: standard\r\n\r\n{}"
    with server(answer(failed)) as (url, _):
        assert probes.completion(url, "standard").served_by is None
