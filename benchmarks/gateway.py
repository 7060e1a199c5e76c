"""Gateway overhead and lifecycle timings on the real demo stack.

Measures, on three vllm-mlx tiers of tiny demo models behind the LiteLLM gateway:
- added latency of the gateway over a direct tier call (p50, p99), at 1 and at 16
  concurrent clients, non-streaming and time-to-first-token streaming;
- throughput through the gateway at 16 clients as a share of direct;
- time from `up` to all-healthy vs the slowest single tier started alone;
- `mlx-stack status` wall time with the stack up;
- the added latency of `auto` routing over a plain tier name (target <= 1 ms p50; the
  breakdown, and the hook's own time, in benchmarks/routing.py);
- what bounds these on this machine: LiteLLM's own per-request time (its
  ``x-litellm-overhead-duration-ms`` header), the proxy's CPU time per request, and the
  CPU seconds each service burns to start (their sum over the cores is the floor of `up`).

Prints a table, writes JSON to benchmarks/results/gateway.json. Targets: overhead
p50 <= 5 ms at 1 client, throughput at 16 clients >= 90% of direct, parallel `up`
<= 1.3x the slowest tier alone, `status` <= 0.5 s.

Usage: python benchmarks/gateway.py [--requests N] [--skip-startup]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import psutil

from mlx_stack.paths import Paths
from mlx_stack.services import demo_stack, lifecycle, stack_store
from mlx_stack.system import ports, secrets

RESULTS = Path(__file__).parent / "results" / "gateway.json"
PROMPT = [{"role": "user", "content": "Tell me about the weather in Paris."}]
MAX_TOKENS = 16
TIER = "fast"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _one(client: httpx.Client, url: str, headers: dict[str, str], stream: bool,
         overhead: list[float] | None = None) -> tuple[float, int]:
    """Seconds to the full answer (or to the first content chunk) and completion tokens;
    LiteLLM's own overhead header (ms), when there is one, goes to ``overhead``."""
    body = {"model": TIER, "messages": PROMPT, "max_tokens": MAX_TOKENS, "stream": stream}
    start = time.perf_counter()
    if not stream:
        resp = client.post(url, json=body, headers=headers)
        resp.raise_for_status()
        if overhead is not None and resp.headers.get("x-litellm-overhead-duration-ms"):
            overhead.append(float(resp.headers["x-litellm-overhead-duration-ms"]))
        return time.perf_counter() - start, int(resp.json()["usage"]["completion_tokens"])
    first = None
    tokens = 0
    with client.stream("POST", url, json=body, headers=headers) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or []
            if choices and choices[0].get("delta", {}).get("content"):
                tokens += 1
                if first is None:
                    first = time.perf_counter() - start
    return (first if first is not None else time.perf_counter() - start), tokens


def _run(url: str, headers: dict[str, str], clients: int, per_client: int, stream: bool) -> dict:
    latencies: list[float] = []
    overhead: list[float] = []
    tokens = [0]
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=120, trust_env=False) as client:
            _one(client, url, headers, stream)  # warm the connection
            for _ in range(per_client):
                seconds, n = _one(client, url, headers, stream, overhead)
                with lock:
                    latencies.append(seconds)
                    tokens[0] += n

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"p50_ms": _pct(latencies, 0.5) * 1000, "p99_ms": _pct(latencies, 0.99) * 1000,
            "requests": len(latencies), "tokens_per_s": tokens[0] / wall, "req_per_s": len(latencies) / wall,
            "overhead_p50_ms": _pct(overhead, 0.5) if overhead else None}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children."""
    proc = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(recursive=True)])


def _proxy_cpu_ms(p: Paths, url: str, headers: dict[str, str], requests: int) -> float:
    """The gateway process's CPU milliseconds per sequential non-streaming request."""
    record = lifecycle.running_record(p, "gateway")
    assert record is not None
    with httpx.Client(timeout=120, trust_env=False) as client:
        _one(client, url, headers, False)
        before = _cpu_s(record.pid)
        for _ in range(requests):
            _one(client, url, headers, False)
        return (_cpu_s(record.pid) - before) / requests * 1000


def _latency(p: Paths, requests: int) -> list[dict]:
    stack = stack_store.load(p)
    key = secrets.read_secret(p, secrets.GATEWAY_KEY) or ""
    direct = f"http://127.0.0.1:{stack.tier(TIER).port}/v1/chat/completions"
    gateway = lifecycle.endpoint(stack) + "/chat/completions"
    rows = []
    for clients in (1, 16):
        per_client = max(2, requests // clients)
        for stream in (False, True):
            d = _run(direct, {}, clients, per_client, stream)
            g = _run(gateway, {"Authorization": f"Bearer {key}"}, clients, per_client, stream)
            rows.append({
                "clients": clients, "mode": "ttft-stream" if stream else "non-stream",
                "direct_p50_ms": round(d["p50_ms"], 1), "gateway_p50_ms": round(g["p50_ms"], 1),
                "added_p50_ms": round(g["p50_ms"] - d["p50_ms"], 1),
                "added_p99_ms": round(g["p99_ms"] - d["p99_ms"], 1),
                "litellm_overhead_p50_ms": round(g["overhead_p50_ms"], 1) if g["overhead_p50_ms"] else None,
                "throughput_share": round(g["tokens_per_s"] / d["tokens_per_s"], 3),
                "direct_tok_s": round(d["tokens_per_s"], 1), "gateway_tok_s": round(g["tokens_per_s"], 1),
            })
    rows[0]["proxy_cpu_ms_per_request"] = round(
        _proxy_cpu_ms(p, gateway, {"Authorization": f"Bearer {key}"}, requests), 1)
    return rows


def _auto_added(p: Paths, requests: int) -> dict:
    """`auto` vs `standard` (same prompt, both served by `standard`), alternated A B B A so
    drift and position on a shared machine hit both alike; median of the paired differences."""
    stack = stack_store.load(p)
    url = lifecycle.endpoint(stack) + "/chat/completions"
    headers = {"Authorization": f"Bearer {secrets.read_secret(p, secrets.GATEWAY_KEY) or ''}"}
    times: dict[str, list[float]] = {"auto": [], "standard": []}
    with httpx.Client(timeout=120, trust_env=False) as client:
        for i in range(requests * 2 + 4):
            for model in (("auto", "standard") if i % 2 == 0 else ("standard", "auto")):
                start = time.perf_counter()
                client.post(url, json={"model": model, "messages": PROMPT, "max_tokens": MAX_TOKENS},
                            headers=headers).raise_for_status()
                if i >= 4:  # the first rounds warm up
                    times[model].append(time.perf_counter() - start)
    diffs = [(a - s) * 1000 for a, s in zip(times["auto"], times["standard"], strict=True)]
    return {"auto_p50_ms": round(_pct(times["auto"], 0.5) * 1000, 2),
            "standard_p50_ms": round(_pct(times["standard"], 0.5) * 1000, 2),
            "added_p50_ms": round(statistics.median(diffs), 2), "pairs": len(diffs)}


def _startup(p: Paths) -> dict:
    stack = stack_store.load(p)
    alone = {}
    for tier in stack.tier_names:
        start = time.monotonic()
        lifecycle.start_service(p, tier, stack=stack)
        alone[tier] = time.monotonic() - start
        lifecycle.down(p)
    start = time.monotonic()
    lifecycle.up(p)
    up_s = time.monotonic() - start
    cpu = {}
    for service in stack.services:
        record = lifecycle.running_record(p, service)
        cpu[service] = _cpu_s(record.pid) if record else 0.0
    slowest = max(alone.values())
    # However well `up` overlaps the starts, the cores must burn every service's CPU seconds.
    floor = sum(cpu.values()) / (os.cpu_count() or 1)
    return {"tier_alone_s": {k: round(v, 1) for k, v in alone.items()}, "slowest_alone_s": round(slowest, 1),
            "up_all_healthy_s": round(up_s, 1), "ratio": round(up_s / slowest, 2),
            "start_cpu_s": {k: round(v, 1) for k, v in cpu.items()}, "cpu_floor_s": round(floor, 1),
            "floor_ratio": round(floor / slowest, 2)}


def _status_time(p: Paths, runs: int = 5) -> dict:
    env = {**os.environ, "MLX_STACK_HOME": str(p.home)}
    cli = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mlx_stack", "status", "--json"], env=env,
                       capture_output=True, check=True)
        cli.append(time.perf_counter() - start)
    inproc = []
    report = lifecycle.status(p)
    for _ in range(runs):
        start = time.perf_counter()
        report = lifecycle.status(p)
        inproc.append(time.perf_counter() - start)
    states = {s.name: s.state for s in report.services}
    return {"cli_median_s": round(statistics.median(cli), 3),
            "probe_median_s": round(statistics.median(inproc), 3), "states": states}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per measurement")
    parser.add_argument("--skip-startup", action="store_true", help="skip the up-time measurement")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="mlx-stack-bench-"))
    os.environ["MLX_STACK_HOME"] = str(home)
    p = Paths(home)
    try:
        demo_stack.write_demo_stack(p)
        stack = stack_store.load(p)
        tiers = tuple(replace(t, port=ports.free_port()) for t in stack.tiers)
        gateway = replace(stack.gateway, port=ports.free_port())
        stack_store.save(p, replace(stack, tiers=tiers, gateway=gateway))
        startup = _startup(p) if not args.skip_startup else None
        if args.skip_startup:
            lifecycle.up(p)
        rows = _latency(p, args.requests)
        status = _status_time(p)
        auto = _auto_added(p, args.requests)
    finally:
        lifecycle.down(p, grace=5)
        shutil.rmtree(home, ignore_errors=True)

    print(f"{'clients':>7} {'mode':<12}{'direct p50':>11}{'gw p50':>9}{'added p50':>10}{'added p99':>10}"
          f"{'gw/direct tok/s':>16}{'LiteLLM own p50':>16}")
    for r in rows:
        own = f"{r['litellm_overhead_p50_ms']:.1f}ms" if r["litellm_overhead_p50_ms"] else "-"
        print(f"{r['clients']:>7} {r['mode']:<12}{r['direct_p50_ms']:>9.1f}ms{r['gateway_p50_ms']:>7.1f}ms"
              f"{r['added_p50_ms']:>8.1f}ms{r['added_p99_ms']:>8.1f}ms{r['throughput_share']:>15.0%}{own:>16}")
    print(f"gateway CPU per request (1 client, non-stream): {rows[0]['proxy_cpu_ms_per_request']} ms")
    if startup:
        print(f"up to all-healthy {startup['up_all_healthy_s']} s; slowest tier alone "
              f"{startup['slowest_alone_s']} s; ratio {startup['ratio']} (target <= 1.3)")
        print(f"start CPU seconds {startup['start_cpu_s']}: floor on {os.cpu_count()} cores "
              f"{startup['cpu_floor_s']} s, ratio {startup['floor_ratio']} at best")
    print(f"status: CLI {status['cli_median_s']} s (target <= 0.5), "
          f"probes alone {status['probe_median_s']} s")
    print(f"auto over a plain tier name: {auto['added_p50_ms']} ms p50 of {auto['pairs']} paired requests "
          f"(target <= 1)")
    one = next(r for r in rows if r["clients"] == 1 and r["mode"] == "non-stream")
    sixteen = next(r for r in rows if r["clients"] == 16 and r["mode"] == "non-stream")
    result = {
        "rows": rows, "startup": startup, "status": status, "auto": auto,
        "targets": {"added_p50_ms_1_client": 5, "throughput_share_16": 0.9, "up_ratio": 1.3, "status_s": 0.5,
                    "auto_added_p50_ms": 1},
        "pass": {
            "added_p50_ms_1_client": one["added_p50_ms"] <= 5,
            "throughput_share_16": sixteen["throughput_share"] >= 0.9,
            "up_ratio": startup["ratio"] <= 1.3 if startup else None,
            "status_s": status["cli_median_s"] <= 0.5,
            "auto_added_p50_ms": auto["added_p50_ms"] <= 1,
        },
        "load_average": os.getloadavg(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
