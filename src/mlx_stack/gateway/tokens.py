"""Real token counts, only for prompts near a tier's limit (the estimate decides the rest).

Uses the tier's own ``tokenizer.json`` through the ``tokenizers`` library, imported on
first use so a front door that never sees a borderline prompt never loads it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from mlx_stack.json_types import JSONObject

_MEDIA_KEYS = frozenset({"image_url", "input_audio", "source", "file", "image"})
_PER_MESSAGE = 4  # role markers and separators of a chat template
_lock = threading.Lock()


@lru_cache(maxsize=16)
def _tokenizer(folder: str) -> Tokenizer | None:
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def _texts(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in cast("Mapping[object, object]", value).items():
            if key in _MEDIA_KEYS:
                continue
            if isinstance(key, str):
                yield key
            yield from _texts(item)
    elif isinstance(value, list | tuple):
        for item in cast("Sequence[object]", value):
            yield from _texts(item)


def count(folder: str, body: JSONObject) -> int | None:
    """Tokens of the prompt parts of ``body`` (messages, system, tools, input, instructions)."""
    try:
        with _lock:
            tok = _tokenizer(folder)
        if tok is None:
            return None
        parts = [body.get(k) for k in ("messages", "system", "tools", "input", "instructions")]
        texts = [t for part in parts for t in _texts(part)]
        messages = body.get("messages")
        n = len(messages) if isinstance(messages, list) else 0
        encoded = tok.encode_batch(texts, add_special_tokens=False) if texts else []
        return sum(len(e.ids) for e in encoded) + _PER_MESSAGE * (n + 1)
    except Exception:  # a broken tokenizer file: the estimate decides
        return None
