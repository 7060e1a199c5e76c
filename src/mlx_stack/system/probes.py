"""HTTP probes: is a server up, and does it really answer a completion?

A server counts as healthy only after it answered a real one-token completion:
an open port or a 200 on /health says nothing about a wedged model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import httpx

T = TypeVar("T")


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency_s: float
    error: str | None = None
    status_code: int | None = None


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__


def health(base_url: str, timeout: float = 2.0, route: str = "/health") -> ProbeResult:
    """GET ``{base_url}{route}`` (the root of the server, not /v1)."""
    start = time.monotonic()
    try:
        resp = httpx.get(f"{base_url.rstrip('/')}{route}", timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        return ProbeResult(False, time.monotonic() - start, _describe(exc))
    ok = resp.status_code == 200
    return ProbeResult(ok, time.monotonic() - start, None if ok else f"HTTP {resp.status_code}",
                       resp.status_code)


def completion(
    base_url: str, model: str, *, api_key: str | None = None, timeout: float = 10.0
) -> ProbeResult:
    """POST a one-token chat completion to ``{base_url}/v1/chat/completions``."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": model, "messages": [{"role": "user", "content": "ping"}],
            "max_tokens": 1, "stream": False}
    start = time.monotonic()
    try:
        resp = httpx.post(f"{base_url.rstrip('/')}/v1/chat/completions", json=body,
                          headers=headers, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        return ProbeResult(False, time.monotonic() - start, _describe(exc))
    latency = time.monotonic() - start
    if resp.status_code != 200:
        return ProbeResult(False, latency, f"HTTP {resp.status_code}", resp.status_code)
    try:
        choices = resp.json().get("choices")
    except ValueError:
        choices = None
    if not choices:
        return ProbeResult(False, latency, "no choices in the answer", resp.status_code)
    return ProbeResult(True, latency, None, resp.status_code)


def served_models(base_url: str, *, api_key: str | None = None, timeout: float = 5.0) -> list[str] | None:
    """The model names ``GET {base_url}/v1/models`` lists, or None when it does not answer."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.get(f"{base_url.rstrip('/')}/v1/models", headers=headers, timeout=timeout,
                         trust_env=False)
        data = resp.json().get("data") if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    if not isinstance(data, list):
        return None
    return [str(m.get("id")) for m in data if isinstance(m, dict)]


def in_parallel(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``calls`` concurrently (threads: the probes wait on the network)."""
    if not calls:
        return []
    if len(calls) == 1:
        return [calls[0]()]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(c) for c in calls]
        return [f.result() for f in futures]
