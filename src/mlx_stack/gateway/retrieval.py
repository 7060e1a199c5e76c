"""``/v1/embeddings``, ``/v1/rerank`` and ``/rerank`` on the front door (issue 25).

Same key, metrics, 4xx pass-through and chain of attempts as chat (``chain.Chains.run``);
what differs is decided in :mod:`mlx_stack.core.retrieval` (which tier, which shapes are
refused, what the tier gets) and done here: the answer of an embedding tier is reshaped
(base64, ``dimensions``) on its way out, by a wrapper around ``send`` that holds a 2xx
head until its body is known. Only non-streamed JSON answers pass through it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, cast

from mlx_stack.core import retrieval
from mlx_stack.core.front_door import UnknownModel
from mlx_stack.gateway import replies
from mlx_stack.gateway.request import Request
from mlx_stack.json_types import as_object

if TYPE_CHECKING:
    from mlx_stack.gateway.asgi import Message, Receive, Send
    from mlx_stack.gateway.chain import Chains
    from mlx_stack.json_types import JSONObject

PATHS = frozenset(retrieval.PATHS)


def _reshaping_send(send: Send, request: JSONObject) -> Send:
    """``send`` with a 2xx JSON answer rewritten by :func:`retrieval.reshape` and a tier's
    4xx by :func:`retrieval.client_error` (the front door's own errors pass as they are)."""
    held: list[Message] = []
    parts: list[bytes] = []

    def rewrite(status: int, doc: JSONObject) -> JSONObject | None:
        return retrieval.reshape(doc, request) if status < 300 else retrieval.client_error(doc)

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            status = int(message["status"])
            tier = any(k == b"x-mlx-stack-tier" for k, _ in message.get("headers", []))
            if 200 <= status < 300 or (tier and 400 <= status < 500):
                held.append(message)
                return
        elif held and message["type"] == "http.response.body":
            parts.append(bytes(message.get("body", b"")))
            if message.get("more_body"):
                return
            start, raw = held.pop(), b"".join(parts)
            try:
                doc = as_object(json.loads(raw))
                new = rewrite(int(start["status"]), cast("JSONObject", doc)) if doc is not None else None
            except retrieval.Mismatch as exc:
                await replies.error(send, 400, str(exc), code="invalid_request")
                return
            except ValueError:
                new = None
            body = raw if new is None else json.dumps(new, separators=(",", ":")).encode()
            headers = [(k, v) for k, v in cast("list[tuple[bytes, bytes]]", start["headers"])
                       if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await send(message)

    return wrapped


async def serve(door: Chains, path: str, headers: list[tuple[bytes, bytes]], data: JSONObject,
                receive: Receive, send: Send, *, probe: bool) -> None:
    """One retrieval request whose body parsed as a JSON object."""
    problem = retrieval.problem(path, data)
    if problem is not None:
        await replies.error(send, 400, problem, code="invalid_request")
        return
    try:
        p = retrieval.plan(path, data, door.routes.current)
    except UnknownModel as exc:
        await replies.error(send, 404, str(exc), code="model_not_found")
        return
    kind = retrieval.PATHS[path]
    upstream = retrieval.upstream_body(path, data)
    body = json.dumps(upstream, separators=(",", ":")).encode()
    req = Request(retrieval.UPSTREAM_PATH[kind], body, upstream, False, True, "", probe)
    await door.run(req, p, receive, _reshaping_send(send, data))


