"""HTTP probes: is a server up, and does it really answer a completion?

A server counts as healthy only after it answered a real one-token completion:
an open port or a 200 on /health says nothing about a wedged model.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from mlx_stack.system import http_client

T = TypeVar("T")


@dataclass(frozen=True)
class ProbeResult:
    """One probe's answer: ok or why not, and how long it took."""

    ok: bool
    latency_s: float
    error: str | None = None
    status_code: int | None = None
    served_by: str | None = None  # a front door's answer: the local tier that made it (else None)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http_client.BadAnswer):
        return str(exc)  # e.g. "connection closed before the answer's headers"
    return type(exc).__name__


def _request(base_url: str, method: str, route: str, timeout: float, body: object = None,
             headers: dict[str, str] | None = None,
             answer_headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP request (system.http_client: `status` must stay quick to import)."""
    url = urlsplit(base_url)
    raw = json.dumps(body).encode() if body is not None else None
    hdrs = {"Content-Type": "application/json", **(headers or {})} if raw else dict(headers or {})
    return http_client.request(url, method, url.path.rstrip("/") + route, body=raw, headers=hdrs,
                               timeout=timeout, context=_context(url.scheme, url.hostname or ""),
                               answer_headers=answer_headers)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _context(scheme: str, host: str) -> object:
    """For ``https`` (the front door with gateway.tls-cert): its certificate names the Mac's
    LAN name, so on loopback (where these probes reach our own front door) it is not
    checked; anywhere else it is, against the system's CAs (None: the default)."""
    if scheme != "https" or host not in LOOPBACK:
        return None
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def health(base_url: str, timeout: float = 2.0, route: str = "/health") -> ProbeResult:
    """GET ``{base_url}{route}`` (the root of the server, not /v1)."""
    start = time.monotonic()
    try:
        status, _ = _request(base_url, "GET", route, timeout)
    except OSError as exc:
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
    answer_headers: dict[str, str] = {}
    try:
        status, data = _request(base_url, "POST", route, timeout, body, headers, answer_headers)
    except OSError as exc:
        return ProbeResult(False, time.monotonic() - start, _describe(exc))
    latency = time.monotonic() - start
    if status != 200:
        return ProbeResult(False, latency, f"HTTP {status}", status)
    try:
        found = json.loads(data).get(key)
    except (ValueError, AttributeError):
        found = None
    # a front door names the tier that answered; a peer's answer also names its node
    local = "x-mlx-stack-node" not in answer_headers
    served_by = answer_headers.get("x-mlx-stack-tier") if found and local else None
    return ProbeResult(bool(found), latency, None if found else f"no {key} in the answer", status, served_by)


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


# One probe request: url, model, key, timeout, headers (sorted items), kind (chat | embedding
# | rerank). A plain tuple: hashable, and cheap where `status` starts.
Asked = tuple[str, str, str | None, float, tuple[tuple[str, str], ...], str]


def asked(url: str, model: str, *, api_key: str | None = None, timeout: float = 10.0,
          headers: dict[str, str] | None = None, kind: str = "chat") -> Asked:
    return url, model, api_key, timeout, tuple(sorted((headers or {}).items())), kind


def ask(request: Asked) -> ProbeResult:
    """The request's answer: a one-token completion, or a retrieval tier's tiny request."""
    url, model, api_key, timeout, headers, kind = request
    if kind != "chat":
        return retrieval(url, model, kind, timeout=timeout, headers=dict(headers))
    return completion(url, model, api_key=api_key, timeout=timeout, headers=dict(headers))


class Ahead:
    """Probe requests sent before anyone asks them (`status` sends its last look's while it
    loads the rest of itself); each answer goes to the first identical request, once."""

    def __init__(self) -> None:
        self._sent: dict[Asked, tuple[threading.Thread, list[ProbeResult]]] = {}
        self._lock = threading.Lock()

    def send(self, request: Asked) -> None:
        box: list[ProbeResult] = []
        thread = threading.Thread(target=lambda: box.append(ask(request)), daemon=True,
                                  name="mlx-stack-ahead")
        with self._lock:
            if request in self._sent:
                return
            self._sent[request] = (thread, box)
        thread.start()

    def take(self, request: Asked) -> ProbeResult | None:
        """The answer to ``request`` if it was sent ahead (waiting for it: no longer than the
        request's own deadline); None when it was not, or was taken already."""
        with self._lock:
            sent = self._sent.pop(request, None)
        if sent is None:
            return None
        thread, box = sent
        while thread.is_alive():
            thread.join(0.1)  # short joins: Ctrl-C reaches the caller at once
        return box[0] if box else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._sent)


def fetch_text(base_url: str, route: str, *, api_key: str | None = None, timeout: float = 2.0) -> str | None:
    """GET ``{base_url}{route}``; the body as text when 200, else None."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        status, data = _request(base_url, "GET", route, timeout, headers=headers)
    except OSError:
        return None
    return data.decode(errors="replace") if status == 200 else None


def in_parallel(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``calls`` concurrently (threads: the probes wait on the network); the last one
    runs in the calling thread, so work placed there overlaps the others' waits.

    The other threads are daemons and the caller then waits in short joins, so Ctrl-C
    reaches it at once (a thread pool would first wait for every call to finish). Every
    call runs to its end; then the first failure, in the calls' order, is raised.
    """
    if not calls:
        return []
    results: list[tuple[bool, object]] = [(False, None)] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = (True, calls[i]())
        except BaseException as exc:  # handed back to the caller below
            results[i] = (False, exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True, name="mlx-stack-parallel")
               for i in range(len(calls) - 1)]
    for t in threads:
        t.start()
    try:  # (Ctrl-C here leaves at once, as it does from the joins below)
        results[-1] = (True, calls[-1]())
    except Exception as exc:
        results[-1] = (False, exc)
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
    status, data = _request(base_url, "POST", route, timeout, body)
    took = time.monotonic() - start
    try:
        return status, took, json.loads(data)
    except ValueError:
        return status, took, None


def fetch_url(url: str, route: str, *, headers: dict[str, str] | None = None, timeout: float = 2.0,
              ca_file: str | None = None) -> tuple[int, bytes]:
    """GET ``{url}{route}`` over http or https (checked against ``ca_file`` when given, else
    the system's CAs); (status, body of at most 1 MiB). Raises OSError (ssl errors included)
    when unreachable."""
    parts = urlsplit(url)
    context = None
    if parts.scheme == "https" and ca_file is not None:
        import ssl

        context = ssl.create_default_context(cafile=ca_file)
    return http_client.request(parts, "GET", parts.path.rstrip("/") + route, headers=headers,
                               timeout=timeout, limit=1024 * 1024, context=context)
