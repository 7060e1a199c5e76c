"""Answers the front door writes itself: JSON, errors (OpenAI or Anthropic style), headers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlx_stack.gateway.asgi import Send
    from mlx_stack.json_types import JSONObject

# Not passed on from an upstream answer: they describe one hop, not the answer.
_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"server",
                  b"date", b"upgrade", b"proxy-connection", b"te", b"trailer"})

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 408: "invalid_request_error",
          413: "request_too_large", 429: "rate_limit_error"}


async def send_bytes(send: Send, status: int, body: bytes, content_type: bytes = b"application/json",
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, data: object) -> None:
    await send_bytes(send, status, json.dumps(data).encode())


async def error(send: Send, status: int, message: str, *, anthropic: bool = False, code: str | None = None,
                kind: str = "client", extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """An error answer in the dialect of the route (Anthropic on /v1/messages, else OpenAI)."""
    if anthropic:
        etype = _TYPES.get(status, "api_error" if kind == "server" else "invalid_request_error")
        if status == 503:
            etype = "overloaded_error"
        body: JSONObject = {"type": "error", "error": {"type": etype, "message": message}}
    else:
        etype = "server_error" if kind == "server" else _TYPES.get(status, "invalid_request_error")
        if status == 401:
            etype = "invalid_request_error"
        body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
    if status == 401:
        extra = [*(extra or []), (b"www-authenticate", b"Bearer")]
    await send_bytes(send, status, json.dumps(body).encode(), extra=extra)


def pass_headers(upstream: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]],
                 length: int | None) -> list[tuple[bytes, bytes]]:
    """The upstream's headers minus hop-by-hop ones, plus ours (and a length when known)."""
    out = [(k.lower(), v) for k, v in upstream if k.lower() not in _HOP]
    if length is not None:
        out.append((b"content-length", str(length).encode()))
    out.extend(extra)
    return out
