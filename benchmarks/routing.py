"""What `auto` routing costs: the hook's own time, and `auto` vs a plain tier name end to end.

On the real demo stack (three vllm-mlx tiers of tiny models behind the LiteLLM gateway
with the mlx-stack hook), measures:
- the hook's routing step in process (microseconds) for a plain, a tools and a long prompt;
- end to end, `auto` against `standard` with the same prompt (both served by `standard`),
  requests alternated A B B A ... so that drift and position on a shared machine hit both
  alike; the paired median difference with a bootstrap 95% interval; target: `auto`
  adds <= 1 ms p50;
- the cost of the routing additions on every request: `standard` through the stack's
  gateway against a second LiteLLM proxy started from the same config without them
  (no hook, no pre-call context checks).

Prints a table, writes JSON to benchmarks/results/routing.json.

Usage: python benchmarks/routing.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
import yaml

from mlx_stack.core import litellm_config
from mlx_stack.paths import Paths
from mlx_stack.services import demo_stack, lifecycle, stack_store
from mlx_stack.services.service_control import command_for
from mlx_stack.system import ports, secrets

RESULTS = Path(__file__).parent / "results" / "routing.json"
PROMPT = [{"role": "user", "content": "Tell me about the weather in Paris."}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
MAX_TOKENS = 8


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _hook_cost(runs: int = 2000) -> dict[str, dict[str, float]]:
    """The routing step of the hook, in process, against the stack's routing.json."""
    from mlx_stack.gateway.hook import MlxStackHook

    hook = MlxStackHook(counts_file=Path(tempfile.mkdtemp()) / "counts.json")  # not the gateway's file
    requests = {
        "plain": {"model": "auto", "messages": PROMPT},
        "tools": {"model": "auto", "messages": PROMPT, "tools": TOOLS},
        "long (12 KB)": {"model": "auto", "messages": [{"role": "user", "content": "word " * 2500}]},
        "chat history (40 msgs)": {"model": "auto", "messages": [
            {"role": "user" if i % 2 else "assistant", "content": "A sentence of a conversation. " * 5}
            for i in range(40)]},
    }

    async def measure(body: dict) -> tuple[list[float], str]:
        times = []
        data = body
        for _ in range(runs):
            data = dict(body, litellm_call_id="x")
            start = time.perf_counter()
            await hook._route(data)
            times.append(time.perf_counter() - start)
            hook._routes.clear()
        return times, data["model"]

    out = {}
    for name, body in requests.items():
        times, routed_to = asyncio.run(measure(body))
        out[name] = {"p50_us": round(_pct(times, 0.5) * 1e6, 1), "p99_us": round(_pct(times, 0.99) * 1e6, 1),
                     "routed_to": routed_to}
    return out


def _post(client: httpx.Client, url: str, key: str, model: str) -> tuple[float, float]:
    """Seconds end to end, and LiteLLM's own overhead header (ms: proxy time outside the model call)."""
    body = {"model": model, "messages": PROMPT, "max_tokens": MAX_TOKENS}
    start = time.perf_counter()
    r = client.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
    r.raise_for_status()
    return time.perf_counter() - start, float(r.headers.get("x-litellm-overhead-duration-ms", "nan"))


def _interleaved(pairs: list[tuple[str, str]], key: str,
                 requests: int) -> dict[str, list[tuple[float, float]]]:
    """Alternate the (url, model) pairs request by request; (seconds, overhead ms) per pair."""
    out: dict[str, list[tuple[float, float]]] = {f"{u}|{m}": [] for u, m in pairs}
    with httpx.Client(timeout=120, trust_env=False) as client:
        for url, model in pairs:  # warm connections and servers
            for _ in range(3):
                _post(client, url, key, model)
        for i in range(requests):
            order = pairs if i % 2 == 0 else list(reversed(pairs))  # A B, B A: positions cancel
            for url, model in order:
                out[f"{url}|{model}"].append(_post(client, url, key, model))
    return out


def _bare_gateway(p: Paths, key: str) -> tuple[subprocess.Popen[bytes], str]:
    """A second LiteLLM proxy on the same tiers, from the plain rendered config."""
    stack = stack_store.load(p)
    port = ports.free_port()
    config = litellm_config.render(stack)
    path = p.generated_dir / "litellm-bare.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = command_for(p, replace(stack, gateway=replace(stack.gateway, port=port)), "gateway")
    argv = [a if a != str(p.generated_dir / "litellm.yaml") else str(path) for a in cmd.argv]
    env = {**os.environ, **cmd.env, "MLX_STACK_GATEWAY_CONFIG": str(path)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health/liveliness", timeout=1).status_code == 200:
                return proc, url + "/v1/chat/completions"
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the bare LiteLLM proxy did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per series")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="mlx-stack-bench-routing-"))
    os.environ["MLX_STACK_HOME"] = str(home)
    p = Paths(home)
    bare = None
    try:
        demo_stack.write_demo_stack(p)
        stack = stack_store.load(p)
        stack = replace(stack, tiers=tuple(replace(t, port=ports.free_port()) for t in stack.tiers),
                        gateway=replace(stack.gateway, port=ports.free_port()))
        stack_store.save(p, stack)
        lifecycle.up(p)
        key = secrets.read_secret(p, secrets.GATEWAY_KEY) or ""
        routed = lifecycle.endpoint(stack) + "/chat/completions"
        bare, bare_url = _bare_gateway(p, key)
        series = _interleaved([(routed, "auto"), (routed, "standard")], key, args.requests)
        bare_series = _interleaved([(routed, "standard"), (bare_url, "standard")], key, args.requests)
        hook = _hook_cost()
    finally:
        if bare is not None:
            bare.kill()
            bare.wait()
        lifecycle.down(p, grace=5)

    runs = {"auto": series[f"{routed}|auto"], "standard": series[f"{routed}|standard"],
            "standard (2nd run)": bare_series[f"{routed}|standard"],
            "standard_without_routing": bare_series[f"{bare_url}|standard"]}
    ms = {name: {"p50_ms": round(_pct([s for s, _ in v], 0.5) * 1000, 2),
                 "p99_ms": round(_pct([s for s, _ in v], 0.99) * 1000, 2),
                 "litellm_overhead_p50_ms": round(statistics.median(o for _, o in v), 2)}
          for name, v in runs.items()}

    def paired(a: str, b: str, index: int, scale: float) -> list[float]:
        """Median of the differences of back-to-back requests, and its bootstrap 95% interval."""
        diffs = [(x[index] - y[index]) * scale for x, y in zip(runs[a], runs[b], strict=True)]
        rng = random.Random(0)
        boots = sorted(statistics.median(rng.choices(diffs, k=len(diffs))) for _ in range(1000))
        return [round(statistics.median(diffs), 2), round(boots[25], 2), round(boots[974], 2)]

    added = {  # [median, low, high] in ms
        "auto_over_standard_p50_ms": paired("auto", "standard", 0, 1000),
        "auto_over_standard_litellm_overhead_p50_ms": paired("auto", "standard", 1, 1),
        "routing_additions_over_bare_gateway_p50_ms": paired("standard (2nd run)", "standard_without_routing",
                                                             0, 1000),
        "routing_additions_litellm_overhead_p50_ms": paired("standard (2nd run)", "standard_without_routing",
                                                            1, 1),
    }
    print(f"hook routing step (in process, {len(hook)} request shapes):")
    for name, h in hook.items():
        print(f"  {name:<24} p50 {h['p50_us']:>7.1f} us  p99 {h['p99_us']:>7.1f} us  -> {h['routed_to']}")
    print(f"end to end, {args.requests} interleaved requests each (tiny model, {MAX_TOKENS} tokens):")
    for name, m in ms.items():
        print(f"  {name:<26} p50 {m['p50_ms']:>7.2f} ms  p99 {m['p99_ms']:>7.2f} ms"
              f"  (LiteLLM overhead header p50 {m['litellm_overhead_p50_ms']:.2f} ms)")
    def show(v: list[float]) -> str:
        return f"{v[0]:.2f} ms [95%: {v[1]:.2f} .. {v[2]:.2f}]"

    print(f"  auto adds (paired median): {show(added['auto_over_standard_p50_ms'])} end to end, "
          f"{show(added['auto_over_standard_litellm_overhead_p50_ms'])} of LiteLLM overhead (target <= 1)")
    print(f"  routing additions on every request: {show(added['routing_additions_over_bare_gateway_p50_ms'])}"
          f" end to end, {show(added['routing_additions_litellm_overhead_p50_ms'])} of LiteLLM overhead")
    result = {"hook": hook, "end_to_end": ms, "added": added, "requests": args.requests,
              "target": {"auto_over_standard_p50_ms": 1.0},
              "pass": {"auto_over_standard_p50_ms": added["auto_over_standard_p50_ms"][0] <= 1.0},
              "load_average": os.getloadavg()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
