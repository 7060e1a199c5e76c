"""Token-id input for ``/v1/embeddings`` (issue 25): the ids turned back into their text.

vllm-mlx 0.6 embeds text only (``input: str | list[str]``). OpenAI's API also takes token
ids (a list of integers, or a list of such lists); they are decoded here with the tier's own
tokenizer (``tokenizer.json`` in its model folder, through the ``tokenizers`` library,
imported and loaded on the first such request, once per folder, in a worker thread) and
accepted only when the text encodes back to exactly those ids, with or without the special
tokens the model adds itself. The tier encodes that text again, so the model runs on the
same tokens as for the text, and its ``usage`` counts them. Anything else is a 400 that
names the problem: ids out of the vocabulary, ids that are not this model's encoding of a
text (e.g. tiktoken's ids, which LangChain's ``OpenAIEmbeddings`` sends by default),
special tokens inside the text, an input over the encoder's limit.
"""

from __future__ import annotations

import asyncio
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from mlx_stack.core.retrieval import TOO_LONG, too_long

if TYPE_CHECKING:
    from tokenizers import Tokenizer

_lock = threading.Lock()


class Refused(Exception):
    """Token ids this tier cannot embed (a 400); ``code`` as OpenAI's error carries it."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@lru_cache(maxsize=8)
def _load(folder: str) -> Tokenizer | None:
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()  # a tokenizer.json may carry both: the ids must round-trip whole
    tok.no_padding()
    return tok


def _tokenizer(folder: str | None) -> Tokenizer:
    try:
        with _lock:
            tok = _load(folder) if folder else None
    except Exception:  # a broken file: the same answer as a missing one
        tok = None
    if tok is None:
        raise Refused("this embedding model's tokenizer (tokenizer.json in its folder) cannot be read "
                      "by the front door, so it takes text only: send the text")
    return tok


def decode(folder: str | None, arrays: list[list[int]], limit: int | None, *, flat: bool) -> list[str]:
    """The text each array of ids encodes (blocking: run it in a thread). ``limit``: the
    encoder's input limit in tokens, counted as the tier counts them (special tokens included).
    Raises :class:`Refused`."""
    def where(i: int) -> str:
        return "`input`" if flat else f"`input[{i}]`"

    for i, ids in enumerate(arrays):  # cheap checks first: nothing is decoded past them
        if limit is not None and len(ids) > limit:
            raise Refused(too_long(i, len(ids), limit), TOO_LONG)
    tok = _tokenizer(folder)
    size = tok.get_vocab_size(with_added_tokens=True)
    for i, ids in enumerate(arrays):
        top = max(ids)
        if top >= size:
            raise Refused(f"{where(i)} holds token id {top}: this model's vocabulary has {size:,} "
                          f"ids (0 to {size - 1:,})")
    texts = tok.decode_batch(arrays, skip_special_tokens=True)
    encoded = tok.encode_batch(texts, add_special_tokens=True)  # as the tier encodes them
    for i, (ids, text, full) in enumerate(zip(arrays, texts, encoded, strict=True)):
        if not text:
            raise Refused(f"{where(i)} decodes to no text (only special tokens)")
        # the same minus the tokens the post-processor added ([CLS] ... [SEP], a BOS/EOS)
        plain = [t for t, added in zip(full.ids, full.special_tokens_mask, strict=True) if not added]
        if ids != full.ids and ids != plain:
            raise Refused(f"{where(i)} is not this model's tokenization of a text (its text "
                          "encodes to other ids): send the text, or ids from this model's own "
                          "tokenizer (LangChain's OpenAIEmbeddings sends tiktoken ids unless "
                          "check_embedding_ctx_length=False)")
        if limit is not None and len(full.ids) > limit:
            raise Refused(too_long(i, len(full.ids), limit), TOO_LONG)
    return texts


async def texts(folder: str | None, arrays: list[list[int]], limit: int | None, *, flat: bool) -> list[str]:
    """:func:`decode` in a worker thread (loading a large tokenizer takes a fraction of a second)."""
    return await asyncio.to_thread(decode, folder, arrays, limit, flat=flat)
