"""One HTTP/1.1 request and its whole answer, for the probes and the small reads of the
control plane (`status`, `up`, the watchdog, doctor, bench).

Plain ``http`` goes over a socket here: ``http.client`` pulls in the ``email`` and
``ssl`` packages (~30-40 ms of imports, paid by every `mlx-stack status`), and these
requests are one-shot (a connection each, closed by this end once the answer is in) to
our own tiers and front door. ``https``
(a front door with ``gateway.tls-cert``, a peer) goes through ``http.client`` with a
TLS context, imported only then. Every failure is an :class:`OSError`: refused, timed
out (the whole exchange shares one deadline), or :class:`BadAnswer`.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import SplitResult

ANSWER_LIMIT = 64 * 1024 * 1024  # an answer larger than this is refused (BadAnswer)
_HEAD_LIMIT = 64 * 1024  # status line and headers


class BadAnswer(OSError):
    """The server's answer is not HTTP/1.x we can read (or is larger than allowed)."""


def request(url: SplitResult, method: str, path: str, *, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0, limit: int = ANSWER_LIMIT,
            context: object = None, answer_headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """``method path`` on the server of ``url``; (status, body). ``context``: the
    ``ssl.SSLContext`` for https (default: the system's CAs); ``answer_headers`` is filled
    with the answer's headers (names in lower case)."""
    out = answer_headers if answer_headers is not None else {}
    host, port = url.hostname or "127.0.0.1", url.port
    for name, value in (headers or {}).items():
        if any(c in name + value for c in "\r\n\0") or not name:
            raise BadAnswer(f"refused to send header {name!r}: it holds a line break")
    if url.scheme == "https":
        return _tls(host, port or 443, method, path, body, headers or {}, timeout, limit, context, out)
    deadline = time.monotonic() + timeout
    named = f"[{host}]" if ":" in host else host
    # No "Connection: close": the server would close first and leave its port in TIME_WAIT
    # for a minute (a program binding a stopped tier's port would fail). The answer is read
    # by its framing, and this end closes first.
    lines = [f"{method} {path} HTTP/1.1", f"Host: {named}:{port or 80}",
             "Accept-Encoding: identity", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    wire = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    # bytes when it can be: a str host name goes through the idna codec (another import)
    where: str | bytes = host.encode("ascii") if host.isascii() else host
    with socket.create_connection((where, port or 80), timeout=timeout) as sock:  # type: ignore[arg-type]
        sock.sendall(wire)
        return _read(sock, deadline, limit, method, out)


def _read(sock: socket.socket, deadline: float, limit: int, method: str,
          out: dict[str, str]) -> tuple[int, bytes]:
    buf = bytearray()
    answer: _Answer | None = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        sock.settimeout(left)
        chunk = sock.recv(256 * 1024)
        if chunk:
            buf += chunk
        if answer is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0 or end > _HEAD_LIMIT:
                if len(buf) > _HEAD_LIMIT:
                    raise BadAnswer("answer headers too large")
                if not chunk:
                    raise BadAnswer("connection closed before the answer's headers")
                continue
            answer = _Answer.parse(bytes(buf[:end]), method, out)
            del buf[:end + 4]
        if len(buf) > limit + 64 * 1024:
            raise BadAnswer(f"answer larger than {limit} bytes")
        body = answer.body(buf, closed=not chunk)
        if body is not None:
            if len(body) > limit:
                raise BadAnswer(f"answer larger than {limit} bytes")
            return answer.status, body
        if not chunk:
            raise BadAnswer("connection closed in the middle of the answer")


class _Answer:
    def __init__(self, status: int, length: int | None, chunked: bool) -> None:
        self.status, self.length, self.chunked = status, length, chunked

    @classmethod
    def parse(cls, head: bytes, method: str, fields: dict[str, str]) -> _Answer:
        first, *rest = head.decode("latin-1").split("\r\n")
        parts = first.split(" ", 2)
        code = parts[1] if len(parts) > 1 else ""
        if not parts[0].startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise BadAnswer(f"not an HTTP answer: {first[:60]!r}")
        status = int(parts[1])
        for line in rest:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadAnswer("a malformed header line in the answer")
            fields[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return cls(status, 0, False)
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return cls(status, None, True)
        length = fields.get("content-length")
        if length is None:
            return cls(status, None, False)  # the body runs to the end of the connection
        if not length.isdigit():
            raise BadAnswer(f"a bad Content-Length: {length[:20]!r}")
        return cls(status, int(length), False)

    def body(self, buf: bytearray, *, closed: bool) -> bytes | None:
        """The whole body once ``buf`` holds it, else None (read on)."""
        if self.chunked:  # parsed only when it may be whole: a big answer is not re-read per read
            return _unchunk(buf) if closed or buf.endswith(b"\r\n\r\n") else None
        if self.length is None:
            return bytes(buf) if closed else None
        return bytes(buf[:self.length]) if len(buf) >= self.length else None


def _unchunk(buf: bytearray) -> bytes | None:
    out = bytearray()
    at = 0
    while True:
        end = buf.find(b"\r\n", at)
        if end < 0:
            return None
        size_text = bytes(buf[at:end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadAnswer("a bad chunk size in the answer") from None
        if size < 0:
            raise BadAnswer("a bad chunk size in the answer")
        start = end + 2
        if size == 0:
            return bytes(out)  # (trailers, if any, are not needed)
        if len(buf) < start + size + 2:
            return None
        out += buf[start:start + size]
        at = start + size + 2


def _tls(host: str, port: int, method: str, path: str, body: bytes | None, headers: dict[str, str],
         timeout: float, limit: int, context: object, out: dict[str, str]) -> tuple[int, bytes]:
    import http.client
    import ssl

    ctx = context if isinstance(context, ssl.SSLContext) else ssl.create_default_context()
    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        out.update((k.lower(), v) for k, v in resp.getheaders())
        data = resp.read(limit + 1)
        if len(data) > limit:
            raise BadAnswer(f"answer larger than {limit} bytes")
        return resp.status, data
    except http.client.HTTPException as exc:
        raise BadAnswer(str(exc) or type(exc).__name__) from None
    finally:
        conn.close()
