"""Continue a cut chat stream on the next tier, so the client sees one unbroken answer.

Only for OpenAI chat streams (``/v1/chat/completions``, ``stream: true``) whose answer so
far is plain text (no tool calls). While relaying, :class:`ChatStream` keeps the text
already sent and the stream's ``id``/``model``/``created``. When the tier dies mid-answer,
the next tier renders the conversation plus the partial answer with *its own* chat
template, ending right after the partial text (what transformers calls
``continue_final_message``; vllm-mlx 0.6's chat route has no such option), and
generates the rest through ``/v1/completions``. Its text chunks are re-emitted as chat
chunks of the original stream (copied by the one relay loop,
:class:`mlx_stack.gateway.relay.Relay`, with its stall watch). Anything unexpected: the
stream ends with the error event instead (:func:`mlx_stack.gateway.attempt.error_event`).
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mlx_stack.gateway.attempt import Answer, Failure, attempt
from mlx_stack.json_types import as_list, as_object

if TYPE_CHECKING:
    from jinja2 import Template

    from mlx_stack.gateway.upstream import Pool
    from mlx_stack.json_types import JSON, JSONObject

log = logging.getLogger("mlx_stack.front_door")


KEEP_BYTES = 4 * 1024 * 1024  # a longer stream is not continued (its text is not kept)


class ChatStream:
    """What a relayed chat stream has sent so far. The hot path only appends bytes; the
    events are parsed once, if the stream is cut (:meth:`parse`)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self.text: list[str] = []
        self.meta: JSONObject = {}
        self.continuable = True  # false with tool calls, other choices, a finish, or too long

    def feed(self, chunk: bytes) -> None:
        if self.continuable:
            self._chunks.append(chunk)
            self._size += len(chunk)
            if self._size > KEEP_BYTES:
                self.continuable = False
                self._chunks = []

    def parse(self) -> None:
        """Read the kept events: the text sent so far and the stream's id/model/created."""
        raw, self._chunks = b"".join(self._chunks), []
        for event in raw.split(b"\n\n")[:-1]:  # the last piece may be an incomplete event
            if not event.startswith(b"data: ") or event == b"data: [DONE]":
                continue
            try:
                data = as_object(json.loads(event[6:]))
            except ValueError:
                data = None
            if data is None:
                self.continuable = False
                return
            if not self.meta:
                self.meta = {k: cast("JSON", data.get(k)) for k in ("id", "model", "created")}
            for choice in (as_object(c) or {} for c in as_list(data.get("choices"))):
                delta = as_object(choice.get("delta")) or {}
                if choice.get("index", 0) != 0 or delta.get("tool_calls") or choice.get("finish_reason"):
                    self.continuable = False
                    return
                content = delta.get("content")
                if isinstance(content, str):
                    self.text.append(content)

    @property
    def partial(self) -> str:
        return "".join(self.text)


@lru_cache(maxsize=16)
def _template(folder: str) -> tuple[Template, dict[str, str]] | None:
    root = Path(folder)
    try:
        config = as_object(json.loads((root / "tokenizer_config.json").read_text())) or {}
    except (OSError, ValueError):
        config = {}
    source = config.get("chat_template")
    if not isinstance(source, str):
        try:
            source = (root / "chat_template.jinja").read_text()
        except OSError:
            return None
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def tojson(value: object, indent: int | None = None) -> str:
        return json.dumps(value, ensure_ascii=False, indent=indent)

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    # jinja2 leaves the values of both mappings untyped (the only unknowns of this module)
    env.filters["tojson"] = tojson  # pyright: ignore[reportUnknownMemberType]
    env.globals["raise_exception"] = raise_exception  # pyright: ignore[reportUnknownMemberType]
    specials = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
    return env.from_string(source), specials


def prompt_for(folder: str | None, messages: list[JSONObject], partial: str) -> str | None:
    """The next tier's prompt that ends right after ``partial`` (None when it cannot be made)."""
    if not folder or not partial:
        return None
    try:
        loaded = _template(folder)
        if loaded is None:
            return None
        template, specials = loaded
        text = template.render(messages=[*messages, {"role": "assistant", "content": partial}],
                               add_generation_prompt=False, **specials)
    except Exception:  # a template this renderer cannot run: no continuation
        log.warning("cannot render the chat template of %s for a continuation", folder)
        return None
    end = text.rfind(partial)
    return text[: end + len(partial)] if end >= 0 else None


def completion_body(body: JSONObject, tier: str, prompt: str, sent_tokens: int) -> bytes:
    """The ``/v1/completions`` request for the rest of the answer."""
    out: JSONObject = {"model": tier, "prompt": prompt, "stream": True}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int):
        out["max_tokens"] = max(1, limit - sent_tokens)
    for key in ("temperature", "top_p", "top_k", "stop", "seed", "presence_penalty", "frequency_penalty"):
        if key in body:
            out[key] = body[key]
    return json.dumps(out).encode()


class Translator:
    """Completions stream chunks -> chat chunks of the original stream (same id and model)."""

    def __init__(self, meta: JSONObject) -> None:
        self.meta = meta
        self._buffer = b""
        self.tokens = 0

    def feed(self, chunk: bytes) -> bytes:
        self._buffer += chunk
        *events, self._buffer = self._buffer.split(b"\n\n")
        out: list[bytes] = []
        for event in events:
            if not event.startswith(b"data: "):
                continue
            if event == b"data: [DONE]":
                out.append(b"data: [DONE]\n\n")
                continue
            try:
                data = as_object(json.loads(event[6:]))
            except ValueError:
                continue
            for choice in (as_object(c) or {} for c in as_list((data or {}).get("choices"))):
                text = choice.get("text") or ""
                delta = {"content": text} if text else {}
                self.tokens += 1 if text else 0
                finish = choice.get("finish_reason")
                chat = {**self.meta, "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                out.append(b"data: " + json.dumps(chat).encode() + b"\n\n")
        return b"".join(out)


async def begin(pools: list[Pool], data: JSONObject, stream: ChatStream, sent_tokens: int,
                deadline: float) -> tuple[Pool, Answer] | None:
    """The first of ``pools`` that takes the rest of a cut chat stream: it and its answer
    (a stream, read up to its first content), or None when none could start (the caller
    sends the error event). The caller relays it through a :class:`Translator`."""
    # a list of message objects: core.front_door.shape_problem refused any other request
    messages = cast("list[JSONObject]", data.get("messages") or [])
    for pool in pools:
        prompt = prompt_for(pool.upstream.tokenizer, list(messages), stream.partial)
        if prompt is None:
            continue
        rest = completion_body(data, pool.name, prompt, sent_tokens)
        result = await attempt(pool, "/v1/completions", rest, deadline)
        if isinstance(result, Failure):
            if result.tier_fault:
                pool.failed(result.why)
            continue
        if not result.stream or result.status != 200 or result.conn is None:
            if result.conn is not None:
                result.conn.abort()
            continue
        log.warning("a stream cut mid-answer goes on on %s (%d characters kept)", pool.name,
                    len(stream.partial))
        return pool, result
    return None
