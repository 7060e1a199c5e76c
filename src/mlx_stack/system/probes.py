"""HTTP probes: is a server up, and does it really answer a completion?

A server counts as healthy only after it answered a real one-token completion:
an open port or a 200 on /health says nothing about a wedged model.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency_s: float
    error: str | None = None
    status_code: int | None = None


def _describe(exc: Exception) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__


def _request(base_url: str, method: str, route: str, timeout: float, body: object = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP request with the standard library (status must stay quick to import)."""
    url = urlsplit(base_url)
    conn = _connection(url.scheme, url.hostname or "127.0.0.1", url.port, timeout)
    try:
        raw = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})} if raw else dict(headers or {})
        conn.request(method, url.path.rstrip("/") + route, body=raw, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _connection(scheme: str, host: str, port: int | None, timeout: float) -> http.client.HTTPConnection:
    """A plain connection, or for ``https`` (the front door with gateway.tls-cert) a TLS one:
    its certificate names the Mac's LAN name, so on loopback (where these probes reach our own
    front door) it is not checked; anywhere else it is, against the system's CAs."""
    if scheme != "https":
        return http.client.HTTPConnection(host, port or 80, timeout=timeout)
    import ssl

    context = ssl.create_default_context()
    if host in LOOPBACK:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection(host, port or 443, timeout=timeout, context=context)


def health(base_url: str, timeout: float = 2.0, route: str = "/health") -> ProbeResult:
    """GET ``{base_url}{route}`` (the root of the server, not /v1)."""
    start = time.monotonic()
    try:
        status, _ = _request(base_url, "GET", route, timeout)
    except (OSError, http.client.HTTPException) as exc:
        return ProbeResult(False, time.monotonic() - start, _describe(exc))
    ok = status == 200
    return ProbeResult(ok, time.monotonic() - start, None if ok else f"HTTP {status}", status)


def completion(
    base_url: str, model: str, *, api_key: str | None = None, timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> ProbeResult:
    """POST a one-token chat completion to ``{base_url}/v1/chat/completions``."""
    headers = {**(headers or {}), **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "ping"}],
                               "max_tokens": 1, "stream": False}
    return _post_probe(base_url, "/v1/chat/completions", body, "choices", timeout, headers)


def _post_probe(base_url: str, route: str, body: dict[str, object], key: str, timeout: float,
                headers: dict[str, str] | None) -> ProbeResult:
    """POST ``body``; ok when the JSON answer (200) holds a non-empty ``key``."""
    start = time.monotonic()
    try:
        status, data = _request(base_url, "POST", route, timeout, body, headers)
    except (OSError, http.client.HTTPException) as exc:
        return ProbeResult(False, time.monotonic() - start, _describe(exc))
    latency = time.monotonic() - start
    if status != 200:
        return ProbeResult(False, latency, f"HTTP {status}", status)
    try:
        found = json.loads(data).get(key)
    except (ValueError, AttributeError):
        found = None
    return ProbeResult(bool(found), latency, None if found else f"no {key} in the answer", status)


# A retrieval tier's one small real request (its process never loads a chat model).
_RETRIEVAL_PROBE: dict[str, tuple[str, dict[str, object], str]] = {
    "embedding": ("/v1/embeddings", {"input": "ping"}, "data"),
    "rerank": ("/v1/rerank", {"query": "ping", "documents": ["ping"]}, "results"),
}


def retrieval(base_url: str, model: str, kind: str, *, timeout: float = 10.0,
              headers: dict[str, str] | None = None) -> ProbeResult:
    """POST one tiny embedding (or rerank) request; ok when the answer holds a result."""
    route, body, key = _RETRIEVAL_PROBE[kind]
    return _post_probe(base_url, route, {"model": model, **body}, key, timeout, headers)


def fetch_text(base_url: str, route: str, *, api_key: str | None = None, timeout: float = 2.0) -> str | None:
    """GET ``{base_url}{route}``; the body as text when 200, else None."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        status, data = _request(base_url, "GET", route, timeout, headers=headers)
    except (OSError, http.client.HTTPException):
        return None
    return data.decode(errors="replace") if status == 200 else None


def in_parallel(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``calls`` concurrently (threads: the probes wait on the network).

    The threads are daemons and the caller waits in short joins, so Ctrl-C reaches
    it at once (a thread pool would first wait for every call to finish).
    """
    if not calls:
        return []
    if len(calls) == 1:
        return [calls[0]()]
    results: list[tuple[bool, object]] = [(False, None)] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = (True, calls[i]())
        except BaseException as exc:  # handed back to the caller below
            results[i] = (False, exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True, name="mlx-stack-parallel")
               for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.1)
    out: list[T] = []
    for ok, value in results:
        if not ok:
            assert isinstance(value, BaseException)
            raise value
        out.append(value)  # type: ignore[arg-type]
    return out


def post_json(base_url: str, route: str, body: object, *, timeout: float = 120.0,
              ) -> tuple[int, float, object]:
    """POST ``body``; (status, seconds, parsed answer or None). Raises OSError when unreachable."""
    start = time.monotonic()
    try:
        status, data = _request(base_url, "POST", route, timeout, body)
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from None
    took = time.monotonic() - start
    try:
        return status, took, json.loads(data)
    except ValueError:
        return status, took, None


def fetch_url(url: str, route: str, *, headers: dict[str, str] | None = None, timeout: float = 2.0,
              ca_file: str | None = None) -> tuple[int, bytes]:
    """GET ``{url}{route}`` over http or https (checked against ``ca_file`` when given, else
    the system's CAs); (status, body). Raises OSError (ssl errors included) when unreachable."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        import ssl

        context = ssl.create_default_context(cafile=ca_file)
        conn = http.client.HTTPSConnection(host, port or 443, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path.rstrip("/") + route, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(1024 * 1024)
    except http.client.HTTPException as exc:
        raise OSError(str(exc) or type(exc).__name__) from None
    finally:
        conn.close()
