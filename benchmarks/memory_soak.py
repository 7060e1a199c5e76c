"""Memory soak: do the tiers stay inside their serving plan under a long stream of distinct prompts?

Runs the demo stack's three tiers (vllm-mlx 0.6 on tiny local models, started with the
flags their serving profiles render) in a temporary MLX_STACK_HOME, then sends many
distinct long-ish prompts (random text, every one different, so the prefix caches keep
filling) from a few clients for some minutes, straight to the tiers. Every few seconds
it samples each tier's RSS (process and children) and its cache figures (/v1/status).

Per tier, two checks:
- peak RSS <= planned memory (need + cache cap) x (1 + --margin);
- no creeping growth: the peak of the last third of the run exceeds the peak of the
  middle third by at most --slack-mb (an unbounded cache or a leak grows steadily;
  a capped cache stops growing once full).

Scale: the demo models are tiny (1 MB of weights, 256 bytes of KV per token), so the
plan (its 0.9 GB activation term is sized for real models on Metal) leaves wide room for
the first check; RSS still moves by hundreds of MB with prefill of long prompts.
``--cache-mb`` shrinks every tier's cap (as a user could edit stack.yaml) so the caches
fill within the run; the table shows the blocks in use against the cap.

Prints a table with PASS/FAIL, writes JSON to benchmarks/results/memory_soak.json.
Usage: python benchmarks/memory_soak.py [--seconds 180] [--clients 3] [--cache-mb 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx

from mlx_stack.paths import Paths
from mlx_stack.services import demo_stack, stack_store
from mlx_stack.services.running import base_url, running_record
from mlx_stack.services.service_control import start_service, stop_service
from mlx_stack.system import server_stats
from mlx_stack.system.ports import free_port

MB = 1024 * 1024
PROMPT_CHARS = {"standard": 1500, "fast": 1500, "longctx": 6000}  # ~0.9 token/char: inside each window


def distinct_prompt(rng: random.Random, chars: int) -> str:
    words, n = [], 0
    while n < chars:
        w = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 8)))
        words.append(w)
        n += len(w) + 1
    return " ".join(words)


class Load:
    """Clients cycling over the tiers, each request a new random prompt."""

    def __init__(self, urls: dict[str, str], clients: int):
        self.urls, self.clients = urls, clients
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = {t: 0 for t in urls}
        self.failed = {t: 0 for t in urls}
        self.prompt_tokens = {t: 0 for t in urls}
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, i: int) -> None:
        rng = random.Random(1000 + i)
        names = list(self.urls)
        k = i
        with httpx.Client(timeout=120, trust_env=False) as client:
            while not self.stop.is_set():
                tier = names[k % len(names)]
                k += 1
                body = {"model": tier, "max_tokens": 8,
                        "messages": [{"role": "user", "content": distinct_prompt(rng, PROMPT_CHARS[tier])}]}
                try:
                    r = client.post(f"{self.urls[tier]}/v1/chat/completions", json=body)
                    good = r.status_code == 200
                    used = r.json().get("usage", {}).get("prompt_tokens", 0) if good else 0
                except (httpx.HTTPError, ValueError):
                    good, used = False, 0
                with self.lock:
                    if good:
                        self.ok[tier] += 1
                        self.prompt_tokens[tier] += int(used or 0)
                    else:
                        self.failed[tier] += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=150)


def cache_stats(url: str) -> dict:
    try:
        data = httpx.get(f"{url}/v1/status", timeout=10, trust_env=False).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return data.get("cache") or {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=180.0, help="length of the soak (default 180)")
    ap.add_argument("--clients", type=int, default=3, help="concurrent clients (default 3)")
    ap.add_argument("--cache-mb", type=int, default=None,
                    help="cap every tier's prefix cache at this many MB (default: the plan's)")
    ap.add_argument("--margin", type=float, default=0.10, help="peak RSS allowance over the plan (0.10)")
    ap.add_argument("--slack-mb", type=int, default=64,
                    help="allowed growth of the last third's peak over the middle third's (64)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "memory_soak.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="mlx-stack-soak-") as tmp:
        os.environ["MLX_STACK_HOME"] = str(Path(tmp) / "home")
        p = Paths(home=Path(tmp) / "home")
        demo_stack.write_demo_stack(p)
        stack = stack_store.load(p)
        tiers = []
        for t in stack.tiers:
            serving = t.serving
            if args.cache_mb is not None and serving is not None:
                serving = replace(serving, cache_memory_mb=args.cache_mb)
            tiers.append(replace(t, port=free_port(), serving=serving))
        stack = replace(stack, tiers=tuple(tiers), gateway=replace(stack.gateway, port=free_port()))
        stack_store.save(p, stack)
        names = stack.tier_names
        try:
            t0 = time.monotonic()
            for name in names:
                start_service(p, name, timeout=600)
            print(f"tiers up in {time.monotonic() - t0:.1f} s; soaking {args.seconds:g} s with "
                  f"{args.clients} clients", file=sys.stderr)
            urls = {n: base_url(stack, n) for n in names}
            pids = {n: running_record(p, n).pid for n in names}  # type: ignore[union-attr]
            samples: dict[str, list[tuple[float, int]]] = {n: [] for n in names}
            start = time.monotonic()
            with Load(urls, args.clients) as load:
                while time.monotonic() - start < args.seconds:
                    for n in names:
                        rss = server_stats.tree_rss(pids[n])
                        if rss:
                            samples[n].append((time.monotonic() - start, rss))
                    time.sleep(2.0)
            caches = {n: cache_stats(urls[n]) for n in names}
        finally:
            for name in names:
                stop_service(p, name, grace=5)

    rows, ok_all = [], True
    for t in stack.tiers:
        prof = t.serving
        assert prof is not None
        series = samples[t.name]
        peak = max(r for _, r in series)
        third = args.seconds / 3
        middle = max((r for s, r in series if third <= s < 2 * third), default=peak)
        late = max((r for s, r in series if s >= 2 * third), default=peak)
        growth = late - middle
        plan_b = prof.planned_mb * MB
        peak_ok = peak <= plan_b * (1 + args.margin)
        growth_ok = growth <= args.slack_mb * MB
        ok_all &= peak_ok and growth_ok and load.ok[t.name] > 0
        c = caches[t.name]
        rows.append({
            "tier": t.name, "planned_mb": prof.planned_mb, "cache_cap_mb": prof.cache_memory_mb,
            "max_cache_blocks": prof.cache_blocks, "peak_rss_mb": round(peak / MB),
            "rss_first_mb": round(series[0][1] / MB), "middle_third_peak_mb": round(middle / MB),
            "last_third_peak_mb": round(late / MB), "late_growth_mb": round(growth / MB),
            "requests_ok": load.ok[t.name], "requests_failed": load.failed[t.name],
            "prompt_tokens": load.prompt_tokens[t.name],
            "cache_allocated_blocks": c.get("allocated_blocks"), "cache_max_blocks": c.get("max_blocks"),
            "cache_evictions": c.get("evictions"), "cache_hits": c.get("hits"),
            "peak_within_plan": peak_ok, "growth_within_cap": growth_ok,
        })

    print(f"{'tier':<9} {'plan':>8} {'cap':>6} {'peak RSS':>9} {'target peak':>12} {'late growth':>12} "
          f"{'target':>8} {'req ok/fail':>12} {'prompt tok':>11} {'blocks':>12}  result")
    for r in rows:
        verdict = "PASS" if r["peak_within_plan"] and r["growth_within_cap"] and r["requests_ok"] else "FAIL"
        blocks = f"{r['cache_allocated_blocks']}/{r['cache_max_blocks']}"
        target = f"<= {round(r['planned_mb'] * (1 + args.margin))} MB"
        print(f"{r['tier']:<9} {r['planned_mb']:>5} MB {r['cache_cap_mb']:>3} MB {r['peak_rss_mb']:>6} MB "
              f"{target:>12} {r['late_growth_mb']:>9} MB {'<= ' + str(args.slack_mb):>8} "
              f"{str(r['requests_ok']) + '/' + str(r['requests_failed']):>12} {r['prompt_tokens']:>11} "
              f"{blocks:>12}  {verdict}")
    print(f"targets: peak RSS <= plan x {1 + args.margin:g}; last-third peak - middle-third peak <= "
          f"{args.slack_mb} MB; overall: {'PASS' if ok_all else 'FAIL'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": args.seconds, "clients": args.clients, "cache_mb": args.cache_mb,
                               "margin": args.margin, "slack_mb": args.slack_mb, "tiers": rows,
                               "pass": ok_all}, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
