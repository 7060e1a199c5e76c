"""What coding agents put in their requests, read for the prefix cache (pure, no I/O).

- :func:`normalize_volatile`: Claude Code opens its system prompt with a billing line
  (``x-anthropic-billing-header: cc_version=2.1.197.b7d; cc_entrypoint=sdk-cli;``) whose
  suffix changes between conversations. At position 0 it makes every new conversation
  (and every subagent) miss the tier's prefix cache and prefill the whole ~19K-token
  system + tools prefix again. The line means nothing to a local model: it is replaced
  by a constant, so the prefix is byte-identical across conversations.
- :func:`session_key`: which conversation a request belongs to (the agent's own session
  header or id, else a hash of its opening), so the front door keeps a conversation on
  the upstream whose cache holds its prefix.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import cast

from mlx_stack.json_types import JSONObject, as_list, as_object

BILLING_LINE = re.compile(r"x-anthropic-billing-header:[^\n]*")
BILLING_CONSTANT = "x-anthropic-billing-header: normalized-by-mlx-stack;"
# Headers that name an agent's session (lower-case, as ASGI gives them).
SESSION_HEADERS = (b"x-claude-code-session-id", b"session_id", b"session-id", b"x-session-id",
                   b"x-codex-window-id", b"conversation_id")
_SESSION_IN_TEXT = re.compile(r'"?session_id"?\s*[:=]\s*"?([A-Za-z0-9_.:-]{6,128})')


def normalize_volatile(body: Mapping[str, object]) -> JSONObject | None:
    """``body`` with a volatile billing line at the start of the system prompt replaced by
    a constant, or None when there is nothing to replace (the usual case: no copy made)."""
    out = dict(body)
    system = body.get("system")
    if isinstance(system, str):
        fixed = _fixed(system)
        if fixed is None:
            return None
        out["system"] = fixed
        return cast("JSONObject", out)
    blocks = as_list(system)
    first = as_object(blocks[0]) if blocks else None
    if first is not None and isinstance(first.get("text"), str):
        fixed = _fixed(str(first["text"]))
        if fixed is not None:
            out["system"] = [{**first, "text": fixed}, *blocks[1:]]
            return cast("JSONObject", out)
    messages = as_list(body.get("messages"))
    first = as_object(messages[0]) if messages else None  # OpenAI dialect: the first system message
    if first is not None and first.get("role") == "system" and isinstance(first.get("content"), str):
        fixed = _fixed(str(first["content"]))
        if fixed is not None:
            out["messages"] = [{**first, "content": fixed}, *messages[1:]]
            return cast("JSONObject", out)
    return None


def _fixed(text: str) -> str | None:
    if not text.startswith("x-anthropic-billing-header:"):
        return None
    fixed = BILLING_LINE.sub(BILLING_CONSTANT, text, count=1)
    return None if fixed == text else fixed


def session_key(headers: Sequence[tuple[bytes, bytes]], body: Mapping[str, object]) -> str:
    """A key for the conversation: the agent's session id when it sends one, else a hash
    of what opens the conversation (system prompt and first message)."""
    for name, value in headers:
        if name in SESSION_HEADERS and value:
            return "h:" + value[:128].decode("latin-1")
    metadata = as_object(body.get("metadata"))
    if metadata is not None:
        user = metadata.get("user_id")
        if isinstance(user, str) and user:
            found = _SESSION_IN_TEXT.search(user)
            return "m:" + (found.group(1) if found else user[:128])
    opening: list[object] = [body.get("system"), body.get("instructions")]
    messages = body.get("messages") if body.get("messages") is not None else body.get("input")
    if isinstance(messages, str):
        opening.append(messages[:2000])
    else:  # up to the first turn that is not a system message (stable for the whole conversation)
        for message in as_list(messages):
            opening.append(message)
            entry = as_object(message)
            if entry is None or entry.get("role") not in ("system", "developer"):
                break
    raw = json.dumps(opening, sort_keys=True, default=str, ensure_ascii=True)[:20000]
    return "o:" + hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


def has_earlier_turns(body: Mapping[str, object]) -> bool:
    """True when the request carries an earlier answer (an assistant turn, a tool result):
    a conversation under way, not its first turn."""
    items = body.get("messages") if body.get("messages") is not None else body.get("input")
    for item in as_list(items):
        entry = as_object(item)
        if entry is not None and (entry.get("role") in ("assistant", "tool")
                                  or entry.get("type") in ("function_call_output", "message_output")):
            return True
    return False
