"""Several stacks as one endpoint, for real (issue 26): two stacks on this machine, each in
its own home and ports. Node A serves `fast`; node B serves `fast` and `standard` (its
fallback order only `fast`, so a request for `fast` that B cannot serve fails at B and
A must fall back). A lists B as a peer and B lists A (a loop: the hop marker must stop
it). The official openai client talks to A. About 2-3 minutes on the shared machine.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from mlx_stack.core.stack import GATEWAY
from mlx_stack.paths import Paths
from mlx_stack.services import demo_stack, lifecycle, peers, routing, stack_store
from mlx_stack.services.running import running_record
from mlx_stack.system import ports, secrets
from tests.helpers import wait_for
from tests.live_stack import LiveStack

pytestmark = pytest.mark.integration
UP_DEADLINE_S = 420
ASK = [{"role": "user", "content": "Say something short."}]


class Node(LiveStack):
    def ask(self, model: str = "fast", timeout: float = 120, **headers: str) -> httpx.Response:
        return httpx.post(self.url + "/v1/chat/completions", timeout=timeout, trust_env=False,
                          headers={"Authorization": f"Bearer {self.key}", **headers},
                          json={"model": model, "messages": ASK, "max_tokens": 8})

    def metrics(self) -> str:
        try:
            return httpx.get(self.url + "/metrics", headers={"x-api-key": self.key}, trust_env=False).text
        except httpx.HTTPError:
            return ""

    def models(self, **headers: str) -> list[str]:
        r = httpx.get(self.url + "/v1/models", headers={"x-api-key": self.key, **headers}, trust_env=False)
        return [m["id"] for m in r.json()["data"]]


def _stack(root: Path, name: str, tiers: tuple[str, ...]) -> Paths:
    p = Paths(root / name)
    demo_stack.write_demo_stack(p)
    stack = stack_store.load(p)
    kept = tuple(replace(t, port=ports.free_port()) for t in stack.tiers if t.name in tiers)
    stack_store.save(p, replace(stack, tiers=kept, fallback_order=("fast",), routing=None,
                                gateway=replace(stack.gateway, port=ports.free_port())))
    return p


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    root = tmp_path_factory.mktemp("peers")
    pa, pb = _stack(root, "a", ("fast",)), _stack(root, "b", ("fast", "standard"))
    keys = [secrets.ensure_gateway_key(p) for p in (pa, pb)]
    urls = [f"http://127.0.0.1:{stack_store.load(p).gateway.port}" for p in (pa, pb)]
    a, b = Node(pa, keys[0], urls[0]), Node(pb, keys[1], urls[1])
    peers.add(pa, b.url, b.key, name="b", check=False)
    peers.add(pb, a.url, a.key, name="a", check=False)  # the loop
    try:
        lifecycle.up(pa, health_timeout=UP_DEADLINE_S)
        lifecycle.up(pb, health_timeout=UP_DEADLINE_S)
        for n, peer in ((a, "b"), (b, "a")):
            up = f'mlx_stack_gateway_peer_up{{peer="{peer}"}} 1'
            wait_for(lambda n=n, up=up: up in n.metrics(), 90, f"peer {peer} up")  # after its cool-down
        yield a, b
    finally:
        for p in (pa, pb):
            lifecycle.down(p, grace=5)


def test_a_tier_on_b_through_a_with_the_openai_client(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    assert "standard" in a.models()  # B's tier joins A's model list
    raw = a.client().chat.completions.with_raw_response.create(model="standard", messages=ASK, max_tokens=8)
    assert raw.headers["x-mlx-stack-node"] == "b" and raw.headers["x-mlx-stack-tier"] == "standard"
    assert raw.parse().choices[0].message.content
    stream = a.client().chat.completions.create(model="standard", messages=ASK, max_tokens=8, stream=True)
    chunks = list(stream)
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_tier_both_serve_is_balanced(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: a.ask(), range(6)))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    where = [r.headers.get("x-mlx-stack-node", "local") for r in answers]
    assert "b" in where and "local" in where, where


def test_no_forwarding_loop(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: b.ask(), range(4)))  # B balances `fast` onto A too
    assert all(r.status_code == 200 for r in answers)
    assert "a" in [r.headers.get("x-mlx-stack-node") for r in answers]
    start = time.monotonic()
    assert a.ask("no-such-model").status_code == 404 and time.monotonic() - start < 5
    assert a.ask("standard", **{"x-mlx-stack-hop": "1"}).status_code == 404  # never forwarded again
    assert "standard" not in a.models(**{"x-mlx-stack-hop": "1"})
    assert "fast" in b.models() and b.models().count("fast") == 1


def test_b_tier_killed_no_request_fails(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    record = running_record(b.home, "fast")
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: a.ask(), range(8)))
    assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers]
    assert all(r.headers.get("x-mlx-stack-node") is None for r in answers)  # A's own tier answered
    assert any("b:" in r.headers.get("x-mlx-stack-fallback-reason", "") for r in answers)


def test_b_front_door_down_cools_down_without_a_hang(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    record = running_record(b.home, GATEWAY)
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)
    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: a.ask(timeout=30), range(6)))
    assert [r.status_code for r in answers] == [200] * 6
    assert time.monotonic() - start < 30
    wait_for(lambda: 'mlx_stack_gateway_peer_up{peer="b"} 0' in a.metrics(), 15, "b cooling down")
    start = time.monotonic()
    r = a.ask("standard", timeout=10)  # only B serves it: refused at once while B is down
    assert r.status_code in (404, 503) and time.monotonic() - start < 3
    counts = routing.gateway_counts(a.home, stack_store.load(a.home))
    assert counts is not None and counts["peers"]["b"]["up"] == 0
