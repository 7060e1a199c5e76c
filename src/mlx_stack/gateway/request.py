"""One proxied request as the front door reads it: the body read (bounded), parsed once,
and what routing and the attempt chain ask of it, as one value (:class:`Request`)."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from mlx_stack.core.routing import has_tools

if TYPE_CHECKING:
    from mlx_stack.gateway.asgi import Receive
    from mlx_stack.json_types import JSONObject

MAX_BODY = 64 * 1024 * 1024
BODY_STALL_S = 30.0  # a request body that sends nothing for this long is answered 408
PROBE_HEADER = b"x-mlx-stack-probe"  # status/up/watchdog probes: not counted as traffic
CHAT = "/v1/chat/completions"


@dataclass(frozen=True)
class Request:
    """A proxied request, parsed once."""

    path: str  # the endpoint, which also says the dialect
    body: bytes  # as the client sent it
    data: JSONObject  # parsed (and normalized, when ``rewrite``)
    anthropic: bool  # answered in Anthropic's dialect (/v1/messages*)
    rewrite: bool  # ``data`` differs from ``body``: encode it again when sending
    session: str  # the conversation it belongs to ("" when not followed)
    probe: bool = False  # a status/up/watchdog probe: not counted, wakes no tier

    @property
    def model(self) -> object:
        """The model (tier or alias) the client named."""
        return self.data.get("model")

    @property
    def stream(self) -> bool:
        return self.data.get("stream") is True

    @property
    def tools(self) -> bool:
        return has_tools(self.data)

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def continuable(self) -> bool:
        """A chat stream without tools: cut mid-answer, it may go on on the next tier."""
        return self.path == CHAT and not self.tools

    def body_for(self, model: str) -> bytes:
        """The body an upstream that expects ``model`` gets (the client's own bytes when
        nothing changes)."""
        if self.data.get("model") == model and not self.rewrite:
            return self.body
        return json.dumps({**self.data, "model": model}, separators=(",", ":")).encode()


def is_probe(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == PROBE_HEADER for name, _ in headers)


TOO_LARGE = b"\0too large"
STALLED = b"\0stalled"


async def read_body(receive: Receive) -> bytes | None:
    """The request body; None when the client left, TOO_LARGE or STALLED (sentinels)."""
    parts: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(BODY_STALL_S):  # a timer, no extra task
                message = await receive()
        except TimeoutError:
            return STALLED
        if message["type"] == "http.disconnect":
            return None
        chunk = cast("bytes", message.get("body", b""))
        if chunk:
            size += len(chunk)
            if size > MAX_BODY:
                return TOO_LARGE
            parts.append(chunk)
        if not message.get("more_body"):
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


# A lone surrogate (\ud800 without its pair) parses but cannot be encoded: looked for only
# when the body has a surrogate escape at all.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_body(body: bytes) -> tuple[JSONObject | None, str | None]:
    """The request body as a JSON object, or why it cannot be one (a 400)."""
    try:
        data: object = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        return None, "the request body is nested too deeply"
    except ValueError as exc:  # UnicodeDecodeError included
        why = str(exc) if "is not valid JSON" in str(exc) else "the request body is not valid JSON"
        return None, why
    if not isinstance(data, dict):
        return None, "the request body must be a JSON object"
    if _SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            return None, "the request body holds a lone UTF-16 surrogate (invalid Unicode)"
        except RecursionError:
            return None, "the request body is nested too deeply"
    return cast("JSONObject", data), None
