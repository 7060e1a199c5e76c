"""Embeddings and reranking through the front door, for real (issue 25).

One stack per module: `setup --demo --retrieval`, cut to one chat tier (`fast`) plus the
demo encoder (`embed`) and reranker (`rerank`), each a real vllm-mlx 0.6 process, and the
real front door. The official `openai` client embeds; reranking is plain HTTP (no SDK
here speaks vllm-mlx's rerank shape). Ends with kill -9 of the encoder under a real
watchdog.
"""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import openai
import psutil
import pytest
from tokenizers import Tokenizer
from typer.testing import CliRunner

from mlx_stack.cli.app import app
from mlx_stack.core.stack import Stack
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_store
from mlx_stack.system import ports
from tests.helpers import wait_for
from tests.integration.test_watchdog import (
    RECOVERY_TIMEOUT_S,
    pid_of,
    start_watchdog,
    stop_process,
    svc_state,
)
from tests.live_stack import LiveStack, running

pytestmark = pytest.mark.integration

UP_DEADLINE_S = 420
DIM = 64  # the demo encoder's width
DOCS = [f"document number {i}: the quick brown fox {'jumps ' * (i % 5)}over the lazy dog" for i in range(20)]


class Live(LiveStack):
    def post(self, path: str, body: object, *, key: str | None = "", **kw: object) -> httpx.Response:
        headers = {} if key is None else {"Authorization": f"Bearer {key or self.key}"}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=120, **kw)  # type: ignore[arg-type]


def _cli(*args: str) -> None:
    r = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.stderr


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = Paths(tmp_path_factory.mktemp("retrieval") / "home")

    def prepare() -> Stack:
        _cli("setup", "--demo", "--retrieval", "--no-start")
        stack = stack_store.load(home)
        tiers = tuple(replace(t, port=ports.free_port()) for t in stack.tiers if t.name != "standard"
                      and t.name != "longctx")
        return replace(stack, tiers=tiers, fallback_order=("fast",), routing=None,
                       gateway=replace(stack.gateway, port=ports.free_port()))

    with running(home, prepare, UP_DEADLINE_S) as stack:
        yield Live(stack.home, stack.key, stack.url)


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (_norm(a) * _norm(b))


def test_status_counts_the_retrieval_tiers(live: Live) -> None:
    report = lifecycle.status(live.home)
    states = {s.name: s.state.value for s in report.services}
    assert states["embed"] == "healthy" and states["rerank"] == "healthy", states
    listed = [m["id"] for m in httpx.get(live.url + "/v1/models",
                                         headers={"Authorization": f"Bearer {live.key}"}).json()["data"]]
    assert "embed" in listed and "rerank" in listed


def test_openai_client_single_and_batch(live: Live) -> None:
    client = live.client()
    one = client.embeddings.create(model="embed", input="hello world")  # the SDK asks for base64
    assert len(one.data) == 1 and len(one.data[0].embedding) == DIM
    assert abs(_norm(one.data[0].embedding) - 1) < 1e-4
    assert one.usage.prompt_tokens > 0
    texts = [f"text {i} about the weather in Paris" for i in range(64)]
    batch = client.embeddings.create(model="embed", input=texts)
    assert [d.index for d in batch.data] == list(range(64))
    assert all(len(d.embedding) == DIM for d in batch.data)


def test_same_text_same_vector_and_floats_equal_base64(live: Live) -> None:
    client = live.client()
    got = client.embeddings.create(model="embed", input=["the lazy dog", "the lazy dog", "Paris"],
                                   encoding_format="float")
    a, b, c = (d.embedding for d in got.data)
    assert _cos(a, b) > 0.99999
    assert _cos(a, c) < 0.9999
    raw = live.post("/v1/embeddings", {"model": "embed", "input": "the lazy dog",
                                       "encoding_format": "base64"}).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    decoded = list(struct.unpack(f"<{len(packed) // 4}f", packed))
    assert len(decoded) == DIM and max(abs(x - y) for x, y in zip(decoded, a, strict=True)) < 1e-6


def test_dimensions_truncate_and_renormalize(live: Live) -> None:
    client = live.client()
    full = client.embeddings.create(model="embed", input="hello", encoding_format="float").data[0].embedding
    short = client.embeddings.create(model="embed", input="hello", dimensions=16).data[0].embedding
    assert len(short) == 16 and abs(_norm(short) - 1) < 1e-5
    assert _cos(short, full[:16]) > 0.99999
    r = live.post("/v1/embeddings", {"model": "embed", "input": "hello", "dimensions": 1000})
    assert r.status_code == 400 and "1000" in r.json()["error"]["message"]


def _gateway_rss_mb(live: Live) -> float:
    pid = pid_of(live.home, "gateway")
    assert pid is not None
    return psutil.Process(pid).memory_info().rss / 2**20


def test_token_ids_embed_like_their_text(live: Live) -> None:
    """OpenAI's token-array input: decoded with the encoder's own tokenizer at the front door."""
    tok = Tokenizer.from_file(str(Path(stack_store.load(live.home).tier("embed").path) / "tokenizer.json"))
    texts = ["the quick brown fox jumps over the lazy dog", "déjà vu, 東京 and a fox 🦊, twice"]
    ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    before = _gateway_rss_mb(live)
    client = live.client()
    as_text = client.embeddings.create(model="embed", input=texts, encoding_format="float")
    as_ids = client.embeddings.create(model="embed", input=ids)  # the SDK asks for base64
    after = _gateway_rss_mb(live)
    for a, b in zip(as_text.data, as_ids.data, strict=True):
        assert _cos(a.embedding, b.embedding) > 0.999
    assert as_ids.usage.prompt_tokens == as_text.usage.prompt_tokens == sum(len(i) for i in ids)
    flat = client.embeddings.create(model="embed", input=ids[0], encoding_format="float", dimensions=16)
    assert len(flat.data) == 1 and _cos(flat.data[0].embedding, as_text.data[0].embedding[:16]) > 0.999
    print(f"front door RSS {before:.1f} MB -> {after:.1f} MB after its first token-id request")
    assert after - before < 64, (before, after)


def test_hostile_token_ids_are_400_naming_the_problem(live: Live) -> None:
    tok = Tokenizer.from_file(str(Path(stack_store.load(live.home).tier("embed").path) / "tokenizer.json"))
    size = tok.get_vocab_size(with_added_tokens=True)
    r = live.post("/v1/embeddings", {"model": "embed", "input": [[5, size]]})
    assert r.status_code == 400 and f"vocabulary has {size:,} ids" in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError) as err:  # over the encoder's limit: as for text
        live.client().embeddings.create(model="embed", input=[tok.encode("fox").ids * 600])
    assert "512" in str(err.value) and err.value.code == "embedding_input_too_long"
    letters = [tok.token_to_id(c) for c in "fox"]  # "fox" as it never encodes: one id a letter
    assert tok.encode("fox").ids != letters
    r = live.post("/v1/embeddings", {"model": "embed", "input": [tok.encode("hi").ids, letters]})
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("`input[1]` is not this model's tokenization")
    started = time.monotonic()
    r = live.post("/v1/embeddings", {"model": "embed", "input": [[5] * 300_000]})
    assert r.status_code == 400 and "512" in r.json()["error"]["message"]
    assert time.monotonic() - started < 10


def test_alias_routes_to_the_encoder(live: Live) -> None:
    raw = live.client().embeddings.with_raw_response.create(model="text-embedding-3-small", input="hi")
    assert raw.headers["x-mlx-stack-tier"] == "embed"
    assert raw.headers["x-mlx-stack-alias"] == "text-embedding-3-small"
    assert len(raw.parse().data[0].embedding) == DIM


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank"])
def test_rerank_twenty_documents(live: Live, path: str) -> None:
    r = live.post(path, {"model": "rerank", "query": "the quick brown fox", "documents": DOCS})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert sorted(x["index"] for x in results) == list(range(20))
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert all(x["document"]["text"] == DOCS[x["index"]] for x in results)
    top = live.post(path, {"model": "rerank-v3.5", "query": "fox", "documents": DOCS, "top_n": 5,
                           "return_documents": False}).json()["results"]
    assert len(top) == 5 and all(x.get("document") is None for x in top)
    # a top_n above the documents is clamped (vllm-mlx alone answers 400)
    assert len(live.post(path, {"model": "rerank", "query": "fox", "documents": DOCS[:3],
                                "top_n": 10}).json()["results"]) == 3


def test_oversize_input_is_a_400_naming_the_limit(live: Live) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        live.client().embeddings.create(model="embed", input="fox " * 2000)
    assert "512" in str(err.value) and err.value.code == "embedding_input_too_long"


def test_wrong_model_names(live: Live) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        live.client().embeddings.create(model="no-such-encoder", input="hi")
    assert "embed" in str(err.value)
    with pytest.raises(openai.NotFoundError):
        live.client().embeddings.create(model="fast", input="hi")  # a chat tier
    with pytest.raises(openai.NotFoundError):  # a retrieval tier never answers chat
        live.client().chat.completions.create(model="embed", messages=[{"role": "user", "content": "hi"}])
    assert live.post("/v1/rerank", {"model": "embed", "query": "q", "documents": ["d"]}).status_code == 404


def test_no_key_is_401(live: Live) -> None:
    assert live.post("/v1/embeddings", {"model": "embed", "input": "hi"}, key=None).status_code == 401
    rerank = {"model": "rerank", "query": "q", "documents": ["d"]}
    assert live.post("/rerank", rerank, key=None).status_code == 401
    assert live.post("/v1/embeddings", {"model": "embed", "input": "hi"}, key="wrong").status_code == 401


@pytest.mark.parametrize("body", [
    {"model": "embed", "input": ["x"] * 3000},
    {"model": "embed", "input": 5},
    {"model": "embed", "input": [[1, 2], []]},
    {"model": "embed", "input": ["ok", [1, 2]]},
    {"model": "embed", "input": [[[1, 2]]]},
    {"model": "embed", "input": [1, -2]},
    {"model": "embed", "input": [[1, 2.5]]},
    {"model": "embed", "input": [[1] * 200_000, [1] * 100_001]},
    {"model": "embed", "input": [[7, 10**40]]},
    {"model": "embed", "input": ["ok", {"a": 1}]},
    {"model": "embed", "input": "hi", "encoding_format": "int8"},
    {"model": "embed", "input": "hi", "dimensions": -3},
    {"model": "embed", "input": "hi", "dimensions": True},
    {"model": "embed"},
    {"model": 7, "input": "hi"},
], ids=["huge-batch", "int", "empty-ids", "text-and-ids", "ids-nested", "negative-id", "float-id",
         "huge-ids", "id-out-of-vocab", "object-item", "encoding", "neg-dims",
        "bool-dims", "no-input", "model-int"])
def test_hostile_embedding_bodies_are_400(live: Live, body: object) -> None:
    r = live.post("/v1/embeddings", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"]


@pytest.mark.parametrize("body", [
    {"model": "rerank", "query": "q", "documents": "not a list"},
    {"model": "rerank", "query": "", "documents": ["d"]},
    {"model": "rerank", "query": "q", "documents": [{"no": "text"}]},
    {"model": "rerank", "query": "q", "documents": ["d"] * 1001},
    {"model": "rerank", "query": "q", "documents": ["d"], "top_n": "x"},
    {"model": "rerank", "query": "q", "documents": ["d"], "top_n": 0},
], ids=["docs-str", "empty-query", "doc-object", "too-many", "top-n-str", "top-n-zero"])
def test_hostile_rerank_bodies_are_400(live: Live, body: object) -> None:
    r = live.post("/v1/rerank", body)
    assert r.status_code == 400, r.text


def test_deep_nesting_and_garbage(live: Live) -> None:
    deep = b'{"model": "embed", "input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = httpx.post(live.url + "/v1/embeddings", content=deep, timeout=60,
                   headers={"Authorization": f"Bearer {live.key}", "content-type": "application/json"})
    assert r.status_code == 400
    r = httpx.post(live.url + "/rerank", content=b"\xff\xfe not json", timeout=60,
                   headers={"Authorization": f"Bearer {live.key}"})
    assert r.status_code == 400


def test_metrics_count_retrieval_requests(live: Live) -> None:
    live.client().embeddings.create(model="embed", input="counted")
    text = httpx.get(live.url + "/metrics", headers={"Authorization": f"Bearer {live.key}"}).text
    lines = [line for line in text.splitlines() if 'tier="embed"' in line and "requests_total" in line]
    assert lines and float(lines[0].rsplit(" ", 1)[1]) >= 1, lines


def test_bench_measures_the_encoder(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLX_STACK_HOME", str(live.home.home))
    r = CliRunner().invoke(app, ["bench", "embed", "--json", "--iterations", "3"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert [lv["batch"] for lv in result["levels"]] == [1, 16, 64]
    assert all(lv["texts_s"] > 0 and lv["tokens_s"] > 0 and lv["p50_ms"] > 0 for lv in result["levels"])
    assert result["peak_rss_gb"] > 0.1 and result["saved_to"] is None
    r = CliRunner().invoke(app, ["bench", "embed", "--save", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    saved_to = json.loads(r.stdout)["saved_to"]
    data = json.loads(Path(saved_to).read_text())
    assert data["kind"] == "embedding" and data["batch"] == 64 and data["texts_s"] > 0
    from mlx_stack.services import bench_store, hardware
    from mlx_stack.services.models import saved_results

    model = stack_store.load(live.home).tier("embed").model
    profile = hardware.detect()
    assert bench_store.load_saved(live.home, profile)[model].memory_bytes == int(data["peak_memory_gb"] * 1e9)
    assert saved_results(live.home, profile)[model]["kind"] == "embedding"


def test_setup_removes_and_adds_a_reranker_on_the_running_stack(live: Live,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    p = live.home
    monkeypatch.setenv("MLX_STACK_HOME", str(p.home))
    folder = stack_store.load(p).tier("rerank").path
    others = {n: pid_of(p, n) for n in ("fast", "embed", "gateway")}
    body = {"model": "rerank", "query": "q", "documents": ["a", "b"]}
    _cli("setup", "--remove", "rerank", "--no-pull")
    wait_for(lambda: live.post("/v1/rerank", body).status_code == 404, 30, "rerank gone from the front door")
    _cli("setup", "--add-rerank", folder, "--no-pull")
    wait_for(lambda: live.post("/v1/rerank", body).status_code == 200, 60, "rerank back")
    assert {n: pid_of(p, n) for n in others} == others  # no other tier (nor the front door) restarted


def test_killed_encoder_is_restarted_by_the_watchdog(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    p = live.home
    monkeypatch.setenv("MLX_STACK_HOME", str(p.home))
    wd: subprocess.Popen[bytes] = start_watchdog(p)
    try:
        wait_for(lambda: svc_state(p, "embed") == "healthy", 120, "the watchdog to see embed healthy")
        old = pid_of(p, "embed")
        assert old is not None
        os.kill(old, signal.SIGKILL)

        def back() -> bool:
            pid = pid_of(p, "embed")
            return pid is not None and pid != old and svc_state(p, "embed") == "healthy"

        wait_for(back, RECOVERY_TIMEOUT_S, "embed restarted and healthy")
        got = live.client().embeddings.create(model="embed", input="after the restart")
        assert len(got.data[0].embedding) == DIM
    finally:
        stop_process(wd)
