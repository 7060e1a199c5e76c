"""What routing costs inside the front door, per request, in process (no servers needed).

For a plain, a tools and a long prompt: parsing the body (``json.loads``), the shape
check, :func:`mlx_stack.core.front_door.plan` (the `auto` rules, the context-window
chain) and the near-a-limit test, in microseconds (median of many runs). Target: the
whole routing step of `auto` <= 1 ms at p50 (the end-to-end cost of the front door is
in benchmarks/gateway.py). Writes JSON to benchmarks/results/routing.json.

Usage: python benchmarks/routing.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from mlx_stack.core.front_door import (
    Upstream,
    is_near_a_limit,
    parse_routes,
    plan,
    shape_problem,
)
from mlx_stack.core.gateway_config import render_routes
from mlx_stack.core.routing import RoutingRules

RESULTS = Path(__file__).parent / "results" / "routing.json"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


def _routes():
    tiers = [Upstream("standard", "org/std", "http://127.0.0.1:1", 32768),
             Upstream("fast", "org/fast", "http://127.0.0.1:2", 32768),
             Upstream("longctx", "org/long", "http://127.0.0.1:3", 131072)]
    rules = RoutingRules("standard", "fast", "longctx")
    return parse_routes(render_routes(tiers, ["standard", "fast", "longctx"], rules, None))


def _body(content: str, tools: bool = False) -> bytes:
    data = {"model": "auto", "messages": [{"role": "system", "content": "You are helpful."},
                                          {"role": "user", "content": content}], "max_tokens": 64}
    if tools:
        data["tools"] = TOOLS
    return json.dumps(data).encode()


def _cost(raw: bytes, runs: int) -> float:
    routes = _routes()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        data = json.loads(raw)
        shape_problem("/v1/chat/completions", data)
        p = plan(data, routes)
        is_near_a_limit(p.tokens, routes)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    cases = {"plain": _body("Tell me about the weather in Paris."),
             "tools": _body("Weather in Paris?", tools=True),
             "long (40k chars)": _body("The quick brown fox jumps over the lazy dog. " * 900)}
    result = {name: round(_cost(raw, args.runs), 1) for name, raw in cases.items()}
    ok = all(us <= 1000 for us in result.values())
    for name, us in result.items():
        verdict = "PASS" if us <= 1000 else "FAIL"
        print(f"routing step, {name:<18} {us:>9.1f} us   target <= 1000 us   {verdict}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"routing_step_us": result, "pass": ok}, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
