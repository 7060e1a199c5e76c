"""A cluster tier through the front door vs mlx_lm.server on its launcher directly (issue 26).

Stack: one `engine: mlx-distributed` tier, two ranks on 127.0.0.1 over the ring backend
(`mlx.launch` running `mlx_lm.server`, tensor parallel), serving the demo model with two
KV heads, behind the real front door. Streams of ``--tokens`` tokens alternate direct
(rank 0's port, the model folder as `model`) and through the front door (A B B A ...);
each figure is the median of the paired ratios, printed beside its target:

- time to first token: direct / front door >= 95% (the front door adds at most ~5%);
- decode tokens/s after the first token: front door / direct >= 95%.

Writes JSON to benchmarks/results/pool_cluster.json; benchmarks/pool.py runs it too
(`cluster_*` figures in pool.json). Tiny model, 2 shared CPU cores: the figures measure what the front
door adds to a cluster tier, not a cluster's speed on Macs.

Usage: python benchmarks/pool_cluster.py [--rounds N] [--tokens N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from common import Check, report
from mlx_stack.core.cluster import Cluster, ClusterHost
from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_store
from mlx_stack.services.demo_models import build_random_model
from mlx_stack.system import ports, secrets

RESULTS = Path(__file__).parent / "results" / "pool_cluster.json"
LOCAL = ClusterHost("127.0.0.1", ("127.0.0.1",))


def stream(client: httpx.Client, url: str, model: str, tokens: int,
           headers: dict[str, str]) -> tuple[float, float]:
    """(seconds to the first content chunk, content chunks per second after it)."""
    body = {"model": model, "stream": True, "max_tokens": tokens, "temperature": 0.0,
            "messages": [{"role": "user", "content": "Write about unified memory on Apple Silicon."}]}
    start = time.perf_counter()
    first = last = None
    chunks = 0
    with client.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]" or '"content"' not in line:
                continue
            if '"content": ""' in line or '"content":""' in line:
                continue
            now = time.perf_counter()
            first = first or now
            last = now
            chunks += 1
    if first is None or last is None or chunks < 2:
        raise RuntimeError(f"{url}: {chunks} content chunks")
    return first - start, (chunks - 1) / max(1e-9, last - first)


def measure(rounds: int = 24, tokens: int = 128) -> tuple[list[Check], dict[str, object]]:
    """The cluster tier's checks and results (also run by benchmarks/pool.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        p = Paths(Path(tmp) / "home")
        os.environ["MLX_STACK_HOME"] = str(p.home)
        model = build_random_model(p.models_dir / "cluster-demo", kv_heads=2)
        tier = Tier(name="big", model="demo/cluster", path=str(model), port=ports.free_port(),
                    context_window=2048, cluster=Cluster((LOCAL, LOCAL), ring_port=ports.free_port()))
        stack = Stack(tiers=(tier,), fallback_order=("big",), gateway=Gateway(port=ports.free_port()))
        stack_store.save(p, stack)
        try:
            lifecycle.up(p, health_timeout=420)
            key = secrets.read_secret(p, secrets.GATEWAY_KEY) or ""
            direct = (f"http://127.0.0.1:{tier.port}", str(model), {})
            front = (f"http://127.0.0.1:{stack.gateway.port}", "big", {"Authorization": f"Bearer {key}"})
            ttft: dict[str, list[float]] = {"direct": [], "front": []}
            decode: dict[str, list[float]] = {"direct": [], "front": []}
            with httpx.Client(timeout=120) as client:
                for warm in (direct, front):
                    stream(client, warm[0], warm[1], 8, warm[2])
                for i in range(rounds):
                    order = [("direct", direct), ("front", front)]
                    for name, (url, m, h) in order if i % 2 == 0 else order[::-1]:
                        t, d = stream(client, url, m, tokens, h)
                        ttft[name].append(t)
                        decode[name].append(d)
        finally:
            lifecycle.down(p, grace=5)
    ttft_ratio = statistics.median(a / b for a, b in zip(ttft["direct"], ttft["front"], strict=True))
    decode_ratio = statistics.median(b / a for a, b in zip(decode["direct"], decode["front"], strict=True))
    results: dict[str, object] = {
        "rounds": rounds, "tokens": tokens, "ranks": 2, "backend": "ring", "sharding": "tensor",
        "ttft_s": {k: round(statistics.median(v), 4) for k, v in ttft.items()},
        "decode_tok_s": {k: round(statistics.median(v), 1) for k, v in decode.items()},
        "ttft_direct_over_front": round(ttft_ratio, 4), "decode_front_over_direct": round(decode_ratio, 4),
        "samples": {"ttft_s": ttft, "decode_tok_s": decode},
    }
    print(f"TTFT median: direct {results['ttft_s']['direct']} s, front door {results['ttft_s']['front']} s")  # type: ignore[index]
    print(f"decode median: direct {results['decode_tok_s']['direct']} tok/s, "  # type: ignore[index]
          f"front door {results['decode_tok_s']['front']} tok/s")  # type: ignore[index]
    checks: list[Check] = [
        ("cluster TTFT, direct / front door (%)", ttft_ratio * 100, "%", ">=", 95, ttft_ratio >= 0.95),
        ("cluster decode, front door / direct (%)", decode_ratio * 100, "%", ">=", 95, decode_ratio >= 0.95),
    ]
    return checks, results


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=24)
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    checks, results = measure(args.rounds, args.tokens)
    return report(checks, results, RESULTS)


if __name__ == "__main__":
    raise SystemExit(main())
