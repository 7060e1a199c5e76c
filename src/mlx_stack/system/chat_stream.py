"""HTTP to an OpenAI-compatible server for `bench`: streamed chat completions and ``/status``.

One pooled ``httpx`` client per server (no proxies from the environment). A stream is
read as server-sent events: :meth:`ChatHttp.stream` yields each ``data:`` chunk, decoded,
as it arrives (so the caller can time the first token) and stops at ``[DONE]``. A refused
connection, an HTTP error status or a chunk that is not JSON is a ServiceError that says
which and where.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TypeAlias

import httpx

from mlx_stack.errors import ServiceError
from mlx_stack.json_types import JSON, JSONObject, as_object

# what stands in for the server in tests (the callers in services/ need not import httpx)
Transport: TypeAlias = httpx.BaseTransport


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ChatHttp:
    """A client for ``base_url`` (ending in /v1); ``transport`` lets tests stand in for the server."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout_s: float = 300.0,
                 transport: Transport | None = None):
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            headers=headers, trust_env=False,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=128, max_keepalive_connections=128),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def get_json(self, route: str, timeout: float = 5.0) -> dict[str, object] | None:
        """``GET {base_url}{route}`` as a JSON object; None on any failure or another answer."""
        try:
            resp = self._http.get(self.base_url + route, timeout=timeout)
            data = resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return as_object(data)

    def stream(self, route: str, body: JSONObject) -> Iterator[JSON]:
        """POST ``body`` to ``{base_url}{route}`` and yield each decoded ``data:`` chunk."""
        url = self.base_url + route
        try:
            with self._http.stream("POST", url, json=body) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise ServiceError(
                        f"{url} answered HTTP {resp.status_code}: {_short(resp.text)}",
                        hint="is this an OpenAI-compatible server serving model " f"{body.get('model')!r}?",
                    )
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    yield json.loads(data)
        except httpx.HTTPError as exc:
            raise ServiceError(
                f"request to {url} failed: {type(exc).__name__}: {_short(str(exc))}",
                hint="check that the server is up (`mlx-stack status`) and see its log",
            ) from None
        except ValueError:
            raise ServiceError(f"{url} sent a chunk that is not JSON",
                               hint="is this an OpenAI-compatible server?") from None
