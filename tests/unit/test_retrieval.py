"""Retrieval tiers (issue 25): stack.yaml fields, command lines, routes, the front door's
pure decisions (core.retrieval), the recommender's picks and the catalog entries."""

from __future__ import annotations

import base64
import math
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from mlx_stack.core import retrieval
from mlx_stack.core.front_door import UnknownModel, parse_routes, plan
from mlx_stack.core.gateway_config import routes_for
from mlx_stack.core.retrieval_plan import need_bytes, pick, reserve
from mlx_stack.core.server_cmd import tier_command
from mlx_stack.core.stack import Stack, Tier, dump_stack, hub_cache_of, parse_stack
from mlx_stack.errors import StateError
from mlx_stack.services.catalog_store import load_catalog

HUB = "/m/hub/models--org--rr/snapshots/abc"


def _stack() -> Stack:
    return Stack(tiers=(
        Tier("fast", "m/fast", "/m/fast", 8101),
        Tier("embed", "qwen3-embedding-0.6b", "/m/enc", 8102, kind="embedding", max_input_tokens=512),
        Tier("rerank", "org/rr", HUB, 8103, kind="rerank"),
    ), fallback_order=("fast",))


def _routes(stack: Stack | None = None):  # type: ignore[no-untyped-def]
    return parse_routes(routes_for(stack or _stack(), {}, None))


def test_stack_round_trips_and_keeps_retrieval_out_of_fallback() -> None:
    s = _stack()
    assert parse_stack(dump_stack(s)) == s
    assert s.chat_tiers == ["fast"]
    data = dump_stack(s)
    data["fallback_order"] = ["fast", "embed"]
    with pytest.raises(StateError, match="retrieval tier"):
        parse_stack(data)
    data = dump_stack(s)
    del data["fallback_order"]
    assert parse_stack(data).fallback_order == ("fast",)
    added = s.with_tier(Tier("embed2", "x", "/x", 8200, kind="embedding"))
    assert added.fallback_order == ("fast",)


@pytest.mark.parametrize(("field", "value"), [("kind", "vector"), ("aliases", ["ok", 3]),
                                              ("max_input_tokens", 0)])
def test_bad_retrieval_fields_name_the_field(field: str, value: object) -> None:
    data = dump_stack(_stack())
    data["tiers"][1][field] = value  # type: ignore[index]
    with pytest.raises(StateError, match=field):
        parse_stack(data)
    chat = dump_stack(_stack())
    chat["tiers"][0]["aliases"] = ["x"]  # type: ignore[index]
    with pytest.raises(StateError, match="aliases"):
        parse_stack(chat)


def test_command_lines() -> None:
    s = _stack()
    emb = tier_command(s.tier("embed"), Path("/bin"))
    assert "--lazy-load-model" in emb.argv and "--continuous-batching" not in emb.argv
    i = emb.argv.index("--embedding-model")
    assert emb.argv[i + 1] == "/m/enc" and "--embedding-max-length" in emb.argv
    assert emb.argv[emb.argv.index("--embedding-overflow-policy") + 1] == "error"
    rr = tier_command(s.tier("rerank"), Path("/bin"))
    assert rr.argv[rr.argv.index("--rerank-model") + 1] == "org/rr"
    assert rr.env["HF_HUB_CACHE"] == "/m/hub" and rr.env["HF_HUB_OFFLINE"] == "1"
    assert hub_cache_of("/plain/folder") is None
    assert hub_cache_of(HUB) == ("org/rr", "/m/hub")


def test_routes_carry_kind_and_chat_never_reaches_a_retrieval_tier() -> None:
    routes = _routes()
    assert routes.tiers["embed"].kind == "embedding" and routes.tiers["embed"].sent_model == "/m/enc"
    assert routes.tiers["rerank"].sent_model == "org/rr"
    assert routes.tiers["fast"].sent_model == "fast"
    assert "text-embedding-3-small" in routes.tiers["embed"].aliases
    with pytest.raises(UnknownModel):
        plan({"model": "embed", "messages": [{"role": "user", "content": "x"}]}, routes)
    p = plan({"model": "auto", "messages": [{"role": "user", "content": "x"}]}, routes)
    assert p.chain == ("fast",)


def test_retrieval_plan_by_name_model_alias() -> None:
    routes = _routes()
    by_name = retrieval.plan("/v1/embeddings", {"model": "embed"}, routes)
    assert by_name.chain == ("embed",) and by_name.alias is None
    assert retrieval.plan("/v1/embeddings", {"model": "qwen3-embedding-0.6b"}, routes).routed == "embed"
    aliased = retrieval.plan("/v1/embeddings", {"model": "text-embedding-3-small"}, routes)
    assert aliased.routed == "embed" and aliased.alias == "text-embedding-3-small"
    assert retrieval.plan("/rerank", {"model": "rerank-v3.5"}, routes).routed == "rerank"
    with pytest.raises(UnknownModel, match="embedding models: embed"):
        retrieval.plan("/v1/embeddings", {"model": "fast"}, routes)
    no_rerank = replace(_stack(), tiers=_stack().tiers[:2])
    with pytest.raises(UnknownModel, match="--add-rerank"):
        retrieval.plan("/v1/rerank", {"model": "x"}, _routes(no_rerank))


def test_embedding_fallback_only_to_the_same_model() -> None:
    s = _stack()
    same = Tier("embed-b", "qwen3-embedding-0.6b", "/m/enc2", 8104, kind="embedding")
    other = Tier("embed-c", "bge-large-en-v1.5", "/m/enc3", 8105, kind="embedding")
    s = replace(s, tiers=(*s.tiers, same, other))
    assert retrieval.plan("/v1/embeddings", {"model": "embed"}, _routes(s)).chain == ("embed", "embed-b")


@pytest.mark.parametrize(("body", "why"), [
    ({"input": 3}, "a string, a list of strings, or token ids"),
    ({"input": ["a", None]}, "a string, a list of strings, or token ids"),
    ({"input": []}, "empty"),
    ({"input": [[]]}, "`input[0]` is an empty token array"),
    ({"input": [[1], []]}, "`input[1]` is an empty token array"),
    ({"input": [1, "a"]}, "mixes"),
    ({"input": ["a", [1]]}, "mixes"),
    ({"input": [[1], 2]}, "mixes"),
    ({"input": [True, False]}, "a string, a list of strings, or token ids"),
    ({"input": [[1, True]]}, "`input[0]` must be a list of integer token ids"),
    ({"input": [[1.0]]}, "integer token ids"),
    ({"input": [[[1]]]}, "integer token ids"),
    ({"input": [[1, "2"]]}, "integer token ids"),
    ({"input": [1, -2]}, "`input` holds a negative token id"),
    ({"input": [[1]] * (retrieval.MAX_INPUTS + 1)}, "token arrays; at most"),
    ({"input": [[1] * 200_000, [1] * 100_001]}, "300,001 token ids; at most 300,000"),
    ({"input": ["x"] * (retrieval.MAX_INPUTS + 1)}, "at most"),
    ({"input": ["a", ""]}, "empty string"),
    ({"input": "a", "encoding_format": "hex"}, "float or base64"),
    ({"input": "a", "dimensions": 0}, "positive"),
    ({"input": "a", "dimensions": False}, "positive"),
])
def test_embedding_problems(body: dict[str, object], why: str) -> None:
    problem = retrieval.problem("/v1/embeddings", {"model": "embed", **body})
    assert problem is not None and why in problem


def test_token_arrays_are_accepted_shapes() -> None:
    for value, arrays in (([5, 6], [[5, 6]]), ([[5], [6, 7]], [[5], [6, 7]]), ("a", None), (["a"], None)):
        body = {"model": "embed", "input": value}
        assert retrieval.problem("/v1/embeddings", body) is None
        assert retrieval.token_arrays(body) == arrays
    err = retrieval.input_error(retrieval.too_long(0, 9, 8), retrieval.TOO_LONG)["error"]
    assert err == {"message": "Input 0 has 9 tokens, exceeding the effective embedding max length of 8",  # type: ignore[comparison-overlap]
                   "type": "invalid_request_error", "code": "embedding_input_too_long", "param": "input"}


def test_rerank_problems_and_clamped_top_n() -> None:
    ok = {"model": "r", "query": "q", "documents": ["a", {"text": "b"}]}
    assert retrieval.problem("/rerank", ok) is None
    assert retrieval.problem("/rerank", {**ok, "documents": [{"x": 1}]}) is not None
    assert retrieval.problem("/rerank", {**ok, "top_n": -1}) is not None
    assert retrieval.problem("/rerank", {**ok, "return_documents": "yes"}) is not None
    assert retrieval.upstream_body("/rerank", {**ok, "top_n": 9})["top_n"] == 2


def test_upstream_body_and_reshape() -> None:
    body = retrieval.upstream_body("/v1/embeddings", {"model": "m", "input": "x", "dimensions": 2,
                                                      "encoding_format": "base64"})
    assert body == {"model": "m", "input": "x", "encoding_format": "float"}
    answer = {"object": "list", "data": [{"index": 0, "embedding": [3.0, 4.0, 12.0]}]}
    assert retrieval.reshape(answer, {}) is None
    cut = retrieval.reshape(answer, {"dimensions": 2})
    assert cut is not None and cut["data"][0]["embedding"] == [0.6, 0.8]  # type: ignore[index]
    b64 = retrieval.reshape(answer, {"encoding_format": "base64"})
    raw = base64.b64decode(b64["data"][0]["embedding"])  # type: ignore[index]
    assert struct.unpack("<3f", raw) == (3.0, 4.0, 12.0)
    with pytest.raises(retrieval.Mismatch, match="more than"):
        retrieval.reshape(answer, {"dimensions": 4})


def test_client_error_in_openai_shape() -> None:
    detail = {"error": "embedding_input_too_long", "message": "Input 0 has 900 tokens, exceeding 512",
              "max_length": 512}
    shaped = retrieval.client_error({"detail": detail})
    assert shaped is not None and shaped["error"]["code"] == "embedding_input_too_long"  # type: ignore[index]
    assert "512" in shaped["error"]["message"]  # type: ignore[index]
    assert retrieval.client_error({"error": {"message": "x"}}) is None
    listed = retrieval.client_error({"detail": [{"loc": ["body", "input"], "msg": "bad"}]})
    assert listed is not None and listed["error"]["message"] == "body.input: bad"  # type: ignore[index]


def test_catalog_retrieval_entries_and_picks() -> None:
    cat = list(load_catalog())
    emb = [e for e in cat if e.kind == "embedding"]
    rr = [e for e in cat if e.kind == "rerank"]
    assert emb and rr
    for e in emb + rr:
        assert e.retrieval is not None and e.retrieval.max_input_tokens > 0 and e.repo_source
    assert all(e.retrieval is not None and e.retrieval.dimensions for e in emb)
    assert all(e.quality is None or e.quality.source.startswith("https://") for e in emb)
    picks, notes = pick(cat, 0)
    assert picks == [] and len(notes) == 2
    picks, _ = pick(cat, 100 * 2**30)
    assert [p.name for p in picks] == ["embed", "rerank"]
    assert picks[0].entry.id == "qwen3-embedding-8b"  # the best published retrieval score
    small = min(need_bytes(e, "int4" if "int4" in e.repos else next(iter(e.repos))) for e in emb)
    assert reserve(cat, small * 8 - 1) == 0 and reserve(cat, small * 8) >= small
    assert math.isclose(picks[0].memory_bytes, need_bytes(picks[0].entry, picks[0].quant))
