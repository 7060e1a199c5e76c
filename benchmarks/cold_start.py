"""Cold start of an on-demand tier: how much does starting it from a request add?

A temporary MLX_STACK_HOME holds the demo stack's ``fast`` tier (vllm-mlx on a tiny
local model) as an on-demand tier behind the real front door. Rounds alternate:

- cold: the tier sleeps; a streaming chat request (the openai client) goes to the front
  door, which starts the tier; measured from sending the request to the first content
  token;
- up: the same tier started by ``mlx-stack up --tier fast`` (lifecycle.up in-process,
  which returns once the tier answered a real one-token completion); measured from the
  call to its return.

After each round the tier is stopped again (``down --tier fast``). The extra of a cold
start is median(cold) - median(up); the target is at most 1 s.

Prints each figure beside its target with PASS/FAIL; writes JSON to
benchmarks/results/cold_start.json.
Usage: python benchmarks/cold_start.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import openai

from mlx_stack.core.stack import ON_DEMAND
from mlx_stack.paths import Paths
from mlx_stack.services import demo_stack, lifecycle, stack_store
from mlx_stack.system import secrets
from mlx_stack.system.ports import free_port

TARGET_EXTRA_S = 1.0


def cold_round(client: openai.OpenAI) -> tuple[float, str | None]:
    """Seconds from the request to the first content token; and the front door's own figure."""
    t0 = time.monotonic()
    first = None
    with client.chat.completions.with_streaming_response.create(
            model="fast", messages=[{"role": "user", "content": "hi"}], max_tokens=8, stream=True) as resp:
        header = resp.headers.get("x-mlx-stack-cold-start")
        for line in resp.iter_lines():
            if first is None and line.startswith("data: {") and '"content"' in line:
                first = time.monotonic() - t0
    if first is None:
        raise RuntimeError("the stream carried no content")
    return first, header


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cold_start.json"))
    args = ap.parse_args()
    home = Paths(Path(tempfile.mkdtemp(prefix="mlx-stack-cold-")) / "home")
    os.environ["MLX_STACK_HOME"] = str(home.home)
    demo_stack.write_demo_stack(home)
    stack = stack_store.load(home)
    fast = replace(stack.tier("fast"), port=free_port(), mode=ON_DEMAND, idle_unload_s=3600)
    stack = replace(stack, tiers=(fast,), fallback_order=("fast",), routing=None,
                    gateway=replace(stack.gateway, port=free_port()))
    stack_store.save(home, stack)
    cold: list[float] = []
    door: list[float] = []
    up: list[float] = []
    try:
        lifecycle.up(home)  # the front door only: the on-demand tier sleeps
        key = secrets.read_secret(home, secrets.GATEWAY_KEY) or ""
        client = openai.OpenAI(base_url=lifecycle.endpoint(stack), api_key=key, max_retries=0, timeout=300)
        for i in range(args.rounds):
            seconds, header = cold_round(client)
            cold.append(seconds)
            if header:
                door.append(float(header))
            lifecycle.down(home, ["fast"], grace=5)
            t0 = time.monotonic()
            lifecycle.up(home, ["fast"])
            up.append(time.monotonic() - t0)
            lifecycle.down(home, ["fast"], grace=5)
            print(f"round {i + 1}: cold start to first token {cold[-1]:.2f} s "
                  f"(front door: tier ready after {header} s); up to ready {up[-1]:.2f} s", file=sys.stderr)
    finally:
        lifecycle.down(home, grace=5)
    cold_m, up_m = statistics.median(cold), statistics.median(up)
    extra = cold_m - up_m
    verdict = "PASS" if extra <= TARGET_EXTRA_S else "FAIL"
    print(f"{'figure':<44} {'value':>8}  target")
    print(f"{'cold start, request to first token (median)':<44} {cold_m:>6.2f} s  -")
    print(f"{'up --tier fast, start to ready (median)':<44} {up_m:>6.2f} s  -")
    print(f"{'extra of the cold start':<44} {extra:>6.2f} s  <= {TARGET_EXTRA_S:.1f} s  {verdict}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rounds": args.rounds, "cold_first_token_s": cold, "front_door_ready_s": door,
                               "up_ready_s": up, "cold_median_s": cold_m, "up_median_s": up_m,
                               "extra_s": extra, "target_extra_s": TARGET_EXTRA_S, "verdict": verdict},
                              indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
