"""Embeddings and reranking at the front door (issue 25): routing, checks, answer shape.

Pure, no I/O. A retrieval tier is a vllm-mlx process serving one encoder
(``/v1/embeddings``) or one cross-encoder (``/v1/rerank``; ``/rerank`` is the same route
under the path Cohere and Jina clients use). :func:`plan` picks the tier a request names,
by tier name, catalog id, the served model or an alias (``text-embedding-3-small``);
:func:`problem` refuses shapes vllm-mlx 0.6 would answer with a 422 or a 500, or that
would hold its event loop for minutes; :func:`upstream_body` is what the tier gets and
:func:`reshape` turns its float answer into what the client asked for.

What vllm-mlx 0.6 does itself, and what is done here instead:

- it accepts ``encoding_format`` but always answers floats: base64 (little-endian
  float32, as OpenAI encodes it) is made here;
- it ignores ``dimensions``: vectors are cut to that many leading dimensions and
  L2-normalized again here (Matryoshka truncation; meaningful for models trained for it,
  which the catalog says in ``notes``);
- it refuses an input over the encoder's limit with a 400 naming the limit
  (``--embedding-overflow-policy error``): passed through as the client error it is;
- it takes text only: token-id arrays (OpenAI's ``input`` as a list of integers or a list
  of such lists) are checked here (:func:`token_arrays`: shape, counts) and turned back into
  their text by ``gateway/token_input.py`` with the tier's own tokenizer, which accepts them
  only when that text encodes to exactly those ids.

Fallback: an embedding request goes only to tiers serving the *same* model (vectors of two
models are not comparable, so another model's answer would corrupt an index silently);
a rerank request may go to any rerank tier (scores are per request).
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping
from typing import cast

from mlx_stack.core.front_door import Plan, Routes, UnknownModel
from mlx_stack.json_types import JSON, JSONObject, as_list, as_object

EMBEDDING, RERANK = "embedding", "rerank"
PATHS = {"/v1/embeddings": EMBEDDING, "/v1/rerank": RERANK, "/rerank": RERANK}
UPSTREAM_PATH = {EMBEDDING: "/v1/embeddings", RERANK: "/v1/rerank"}
MAX_INPUTS = 2048  # OpenAI's per-request limit on embedding inputs
MAX_DOCUMENTS = 1000  # Cohere's documented per-request limit
MAX_DIMENSIONS = 65536
MAX_TOKEN_IDS = 300_000  # OpenAI's per-request limit on tokens summed over the inputs
ENCODINGS = ("float", "base64")
TOO_LONG = "embedding_input_too_long"  # vllm-mlx's code for an input over the encoder's limit
INPUT_SHAPES = ("`input` must be a string, a list of strings, or token ids (a list of integers, "
                "or a list of such lists)")


def plan(path: str, body: Mapping[str, object], routes: Routes) -> Plan:
    """The retrieval tiers to try for this request; :class:`UnknownModel` (404) when none."""
    kind = PATHS[path]
    requested = body.get("model")
    if not isinstance(requested, str) or not requested:
        raise UnknownModel("the request names no model")
    tiers = [u for u in routes.tiers.values() if u.kind == kind]
    if not tiers:
        raise UnknownModel(f"no {kind} model in this stack: add one with "
                           f"`mlx-stack setup --add-{kind} MODEL`")
    exact = [u for u in tiers if requested in (u.name, u.model, u.served)]
    aliased = [u for u in tiers if requested in u.aliases]
    chosen = (exact or aliased or [None])[0]
    if chosen is None:
        names = sorted({n for u in tiers for n in (u.name, *u.aliases)})
        raise UnknownModel(f"model {requested!r} is not a {kind} model here; {kind} models: "
                           + ", ".join(names))
    same = [u.name for u in tiers if u.name != chosen.name
            and (kind == RERANK or u.model == chosen.model)]
    alias = requested if not exact else None
    return Plan(requested, chosen.name, "direct", (chosen.name, *same), 0, alias)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def token_arrays(body: Mapping[str, object]) -> list[list[int]] | None:
    """The token-id arrays of an embeddings request, one per input (a flat list of integers
    is one input), or None when ``input`` is not token ids. Checked by :func:`problem`."""
    value = body.get("input")
    if not isinstance(value, list) or not value:
        return None
    items = as_list(cast(object, value))
    if all(_is_int(x) for x in items):
        return [cast("list[int]", items)]
    if all(isinstance(x, list) for x in items):
        return [cast("list[int]", x) for x in items]
    return None


def _token_problem(items: list[object]) -> str | None:
    """Why these token-id inputs are malformed (``items``: the flat list, or the lists)."""
    flat = all(_is_int(x) for x in items)
    arrays = [items] if flat else [as_list(x) for x in items]
    if len(arrays) > MAX_INPUTS:
        return f"`input` has {len(arrays):,} token arrays; at most {MAX_INPUTS:,} per request"
    for i, ids in enumerate(arrays):
        where = "`input`" if flat else f"`input[{i}]`"
        if not ids:
            return f"{where} is an empty token array"
        if not all(_is_int(t) for t in ids):
            return f"{where} must be a list of integer token ids"
        if any(t < 0 for t in cast("list[int]", ids)):
            return f"{where} holds a negative token id"
    total = sum(len(a) for a in arrays)
    if total > MAX_TOKEN_IDS:
        return f"`input` holds {total:,} token ids; at most {MAX_TOKEN_IDS:,} per request"
    return None


def _embedding_problem(body: Mapping[str, object]) -> str | None:
    value = body.get("input")
    if not isinstance(value, str | list):
        return INPUT_SHAPES
    items: list[object] = [value] if isinstance(value, str) else as_list(cast(object, value))
    if not items:
        return "`input` is empty"
    if all(_is_int(x) for x in items) or all(isinstance(x, list) for x in items):
        problem = _token_problem(items)
        if problem is not None:
            return problem
    elif not all(isinstance(x, str) for x in items):
        if len({type(x) for x in items} & {str, int, list}) > 1:
            return "`input` mixes strings, token ids and token arrays: send one kind per request"
        return INPUT_SHAPES
    elif len(items) > MAX_INPUTS:
        return f"`input` has {len(items):,} items; at most {MAX_INPUTS:,} per request"
    elif any(x == "" for x in items):
        return "`input` holds an empty string"
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ENCODINGS:
        return "`encoding_format` must be float or base64"
    dims = body.get("dimensions")
    if dims is not None and not (_is_int(dims) and 1 <= dims <= MAX_DIMENSIONS):  # type: ignore[operator]
        return "`dimensions` must be a positive integer"
    return None


def _rerank_problem(body: Mapping[str, object]) -> str | None:
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        return "`query` must be a non-empty string"
    raw: object = body.get("documents")
    if not isinstance(raw, list):
        return "`documents` must be a list of strings or {\"text\": ...} objects"
    docs = as_list(cast(object, raw))
    for i, d in enumerate(docs):
        text = d if isinstance(d, str) else (as_object(d) or {}).get("text")
        if not isinstance(text, str):
            return f"`documents[{i}]` must be a string or an object with a string `text`"
    if len(docs) > MAX_DOCUMENTS:
        return f"`documents` has {len(docs):,} items; at most {MAX_DOCUMENTS:,} per request"
    top_n = body.get("top_n")
    if top_n is not None and not (_is_int(top_n) and top_n >= 1):  # type: ignore[operator]
        return "`top_n` must be a positive integer"
    if body.get("return_documents") not in (None, True, False):
        return "`return_documents` must be true or false"
    return None


def problem(path: str, body: Mapping[str, object]) -> str | None:
    """Why this retrieval request can never succeed (a 400 without contacting a tier)."""
    return _embedding_problem(body) if PATHS[path] == EMBEDDING else _rerank_problem(body)


def upstream_body(path: str, body: JSONObject) -> JSONObject:
    """What the tier gets: floats always (base64 is made here), no ``dimensions``; a rerank
    ``top_n`` above the number of documents is clamped (vllm-mlx refuses it)."""
    if PATHS[path] == EMBEDDING:
        out = {k: v for k, v in body.items() if k not in ("dimensions", "encoding_format")}
        out["encoding_format"] = "float"
        return out
    out = dict(body)
    docs = as_list(body.get("documents"))
    top_n = body.get("top_n")
    if _is_int(top_n) and top_n > len(docs):  # type: ignore[operator]
        out["top_n"] = len(docs)
    return out


def input_error(message: str, code: str | None = None) -> JSONObject:
    """A 400 about ``input`` in OpenAI's error shape (as :func:`client_error` words a tier's)."""
    return {"error": {"message": message, "type": "invalid_request_error", "code": code, "param": "input"}}


def too_long(index: int, tokens: int, limit: int) -> str:
    """The words vllm-mlx uses for an input over the encoder's limit (``embedding_input_too_long``)."""
    return f"Input {index} has {tokens} tokens, exceeding the effective embedding max length of {limit}"


class Mismatch(ValueError):
    """The answer cannot be given in the shape asked for (e.g. more dimensions than the model has)."""


def _vector(raw: JSON, dims: int | None, b64: bool) -> JSON:
    values = [float(x) for x in as_list(raw) if isinstance(x, int | float)]
    if dims is not None:
        if dims > len(values):
            raise Mismatch(f"`dimensions` {dims} is more than this model's {len(values)}")
        values = values[:dims]
        norm = math.sqrt(sum(v * v for v in values))
        if norm > 0:
            values = [v / norm for v in values]
    if b64:
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")
    return list[JSON](values)


def reshape(answer: JSONObject, request: Mapping[str, object]) -> JSONObject | None:
    """The tier's float answer in the client's shape (``dimensions``, ``encoding_format``),
    or None when nothing changes. Raises :class:`Mismatch`."""
    dims = request.get("dimensions")
    dims = dims if _is_int(dims) else None
    b64 = request.get("encoding_format") == "base64"
    if dims is None and not b64:
        return None
    data: list[JSON] = []
    for item in as_list(answer.get("data")):
        entry = as_object(item)
        if entry is None:
            continue
        data.append({**entry, "embedding": _vector(entry.get("embedding"), dims, b64)})  # type: ignore[arg-type]
    return {**answer, "data": data}


def client_error(answer: JSONObject) -> JSONObject | None:
    """A tier's 4xx (FastAPI's ``{"detail": ...}``, e.g. the encoder's
    ``embedding_input_too_long`` with ``max_length``) in OpenAI's error shape, which the
    SDKs show; None when it is already in that shape."""
    detail = answer.get("detail")
    if detail is None or "error" in answer:
        return None
    found = as_object(detail)
    if found is not None:
        message = found.get("message")
        code = found.get("error")
        text = message if isinstance(message, str) else str(detail)
        return {"error": {"message": text, "type": "invalid_request_error",
                          "code": code if isinstance(code, str) else None,
                          **({"param": "input"} if "max_length" in found else {})}, "detail": detail}
    items = as_list(detail)
    if items:  # pydantic's list of problems
        first = as_object(items[0]) or {}
        where = ".".join(str(x) for x in as_list(first.get("loc")))
        text = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    else:
        text = str(detail)
    return {"error": {"message": text, "type": "invalid_request_error", "code": None}, "detail": detail}
