"""Several stacks as one endpoint (issue 26): what a peer costs, on two real demo stacks.

Node A and node B each run the demo `fast` tier (vllm-mlx) behind their own front door, in
their own homes and ports; A lists B as a peer with ``gateway.prefer-peers`` (so a single
request goes to B: the added latency is measured through A to B). Each figure is printed
beside its target with PASS/FAIL:

- 16 concurrent streams through A's endpoint (balanced by least outstanding requests
  between A's tier and B) >= 90% of the sum of the two tiers measured directly in the
  same run (8 streams on each tier's own port at once); rounds alternate direct / pool;
- added p50 of a request served by the peer (client -> A -> B's front door -> B's tier)
  over the same request sent to B's front door directly, non-streaming, alternating
  A B B A, the median of the paired differences: <= 3 ms.

Then the cluster tier's figures (benchmarks/pool_cluster.py, run in turn: two ranks on
127.0.0.1 over the ring backend): time to first token and decode through the front door vs
`mlx_lm.server` on its launcher directly, >= 95% each (`--cluster-rounds 0` skips them).

Writes JSON to benchmarks/results/pool.json.

Usage: python benchmarks/pool.py [--requests N] [--rounds N] [--cluster-rounds N] [--cluster-tokens N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx

from common import Check, demo_stack_on_free_ports, report
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, peers, stack_store
from mlx_stack.system import secrets

RESULTS = Path(__file__).parent / "results" / "pool.json"
PROMPT = [{"role": "user", "content": "Tell me about the weather in Paris."}]
TIER = "fast"
STREAM_TOKENS = 64


class Target:
    def __init__(self, base: str, key: str | None) -> None:
        self.url = base + "/v1/chat/completions"
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}


def _plain(client: httpx.Client, t: Target) -> float:
    start = time.perf_counter()
    r = client.post(t.url, json={"model": TIER, "messages": PROMPT, "max_tokens": 8}, headers=t.headers)
    r.raise_for_status()
    return time.perf_counter() - start


def _stream(client: httpx.Client, t: Target, max_tokens: int) -> int:
    body = {"model": TIER, "messages": PROMPT, "max_tokens": max_tokens, "stream": True, "temperature": 0}
    chunks = 0
    with client.stream("POST", t.url, json=body, headers=t.headers) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:]).get("choices") or []
                if choices and choices[0].get("delta", {}).get("content"):
                    chunks += 1
    return chunks


def _streams(targets: list[Target], per_client: int) -> float:
    """Tokens/s of len(targets) concurrent clients (one per entry), ``per_client`` streams each."""
    tokens = [0]
    lock = threading.Lock()

    def worker(t: Target) -> None:
        with httpx.Client(timeout=300, trust_env=False) as client:
            for _ in range(per_client):
                n = _stream(client, t, STREAM_TOKENS)
                with lock:
                    tokens[0] += n

    threads = [threading.Thread(target=worker, args=(t,)) for t in targets]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return tokens[0] / (time.perf_counter() - start)


def _node(root: Path, name: str) -> Paths:
    p = Paths(root / name)
    stack = demo_stack_on_free_ports(p)
    stack_store.save(p, replace(stack, tiers=tuple(t for t in stack.tiers if t.name == TIER),
                                fallback_order=(TIER,), routing=None))
    secrets.ensure_gateway_key(p)
    return p


def cluster_checks(results: dict[str, object], rounds: int, tokens: int) -> list[Check]:
    """The cluster tier's figures (benchmarks/pool_cluster.py): its checks, its results
    under ``cluster``."""
    from pool_cluster import measure

    checks, results["cluster"] = measure(rounds, tokens)
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40, help="paired requests for the added p50")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the 16-stream comparison")
    parser.add_argument("--cluster-rounds", type=int, default=24,
                        help="paired streams for the cluster tier's figures (0: skip them)")
    parser.add_argument("--cluster-tokens", type=int, default=128, help="tokens per cluster-tier stream")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlx-stack-pool-"))
    pa, pb = _node(root, "a"), _node(root, "b")
    sa, sb = stack_store.load(pa), stack_store.load(pb)
    key_a, key_b = secrets.read_secret(pa, secrets.GATEWAY_KEY), secrets.read_secret(pb, secrets.GATEWAY_KEY)
    url_b = f"http://127.0.0.1:{sb.gateway.port}"
    peers.add(pa, url_b, key_b or "", name="b", check=False)
    stack_store.save(pa, replace(stack_store.load(pa), gateway=replace(sa.gateway, prefer_peers=True)))
    results: dict[str, object] = {"tier": TIER, "stream_tokens": STREAM_TOKENS}
    try:
        for p in (pa, pb):
            lifecycle.up(p, health_timeout=600)
        pool = Target(f"http://127.0.0.1:{sa.gateway.port}", key_a)
        peer_door = Target(url_b, key_b)
        tier_a = Target(f"http://127.0.0.1:{sa.tiers[0].port}", None)
        tier_b = Target(f"http://127.0.0.1:{sb.tiers[0].port}", None)
        with httpx.Client(timeout=60, trust_env=False) as c:  # A's peer up, and it serves requests
            for _ in range(300):
                text = c.get(pool.url.replace("/v1/chat/completions", "/metrics"), headers=pool.headers).text
                if 'peer_up{peer="b"} 1' in text:
                    break
                time.sleep(0.2)
            via = c.post(pool.url, json={"model": TIER, "messages": PROMPT, "max_tokens": 4},
                         headers=pool.headers)
            assert via.headers.get("x-mlx-stack-node") == "b", "A did not send a single request to its peer"
        _streams([tier_a, tier_b] * 2, 1)  # warm-up

        # Throughput: 16 streams through A vs 8 + 8 on the two tiers directly, alternating.
        direct, pooled = [], []
        for i in range(args.rounds * 2):
            if i % 2 == 0:
                direct.append(_streams([tier_a] * 8 + [tier_b] * 8, 2))
            else:
                pooled.append(_streams([pool] * 16, 2))
        share = statistics.mean(pooled) / statistics.mean(direct)
        results["sixteen"] = {"direct_sum_tok_s": round(statistics.mean(direct), 1),
                              "through_a_tok_s": round(statistics.mean(pooled), 1), "share": round(share, 3),
                              "direct_runs": [round(x, 1) for x in direct],
                              "pooled_runs": [round(x, 1) for x in pooled]}

        # Added latency of a peer-served request: A -> B vs B's front door directly (A B B A).
        times: dict[str, list[float]] = {"via_a": [], "direct_to_peer": []}
        order = [("via_a", pool), ("direct_to_peer", peer_door)]
        with httpx.Client(timeout=120, trust_env=False) as client:
            for _, t in order:
                for _ in range(3):
                    _plain(client, t)
            for i in range(args.requests):
                for name, t in (order if i % 2 == 0 else list(reversed(order))):
                    times[name].append(_plain(client, t))
        added = statistics.median((a - d) * 1000 for a, d in zip(times["via_a"], times["direct_to_peer"],
                                                                   strict=True))
        results["peer_latency"] = {
            "via_a_p50_ms": round(statistics.median(times["via_a"]) * 1000, 2),
            "direct_to_peer_p50_ms": round(statistics.median(times["direct_to_peer"]) * 1000, 2),
            "added_p50_ms": round(added, 2)}
    finally:
        for p in (pa, pb):
            lifecycle.down(p, grace=5)
    checks: list[Check] = [
        ("16 streams through A / sum of both tiers direct", share * 100, "%", ">=", 90, share >= 0.90),
        ("added p50, peer-served vs direct to the peer", added, "ms", "<=", 3, added <= 3.0),
        *(cluster_checks(results, args.cluster_rounds, args.cluster_tokens) if args.cluster_rounds else []),
    ]
    return report(checks, results, RESULTS)


if __name__ == "__main__":
    raise SystemExit(main())
