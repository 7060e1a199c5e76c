"""Recovery: how fast the watchdog brings a tier back, and what clients see meanwhile.

Runs a real stack in a temporary MLX_STACK_HOME (two vllm-mlx tiers on a tiny model
built here, the LiteLLM gateway) and a real watchdog, then:

1. kill -9 the `standard` tier under a steady client load through the gateway
   (requests for `standard`, which falls back to `fast`): time from the kill to
   `standard` healthy again, and failed client requests (target 0);
2. SIGSTOP `standard` (a wedge): time to detect it (the watchdog stops it) and to
   have it healthy again.

Prints a table, writes JSON to benchmarks/results/recovery.json.
Usage: python benchmarks/recovery.py [--interval S] [--probe-timeout S] [--clients N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.core.watchdog import Policy
from mlx_stack.paths import Paths
from mlx_stack.services import demo_models, lifecycle, stack_store
from mlx_stack.system import pidfile, secrets
from mlx_stack.system.ports import free_port


def pid_of(p: Paths, name: str) -> int | None:
    rec = pidfile.read(p.run_dir, name)
    return rec.pid if rec is not None and pidfile.is_ours(rec) else None


def state_of(p: Paths, name: str) -> str | None:
    try:
        return json.loads((p.run_dir / "watchdog.json").read_text())["services"][name]["state"]
    except (OSError, ValueError, KeyError):
        return None


def answers(url: str, model: str) -> bool:
    try:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        r = httpx.post(f"{url}/v1/chat/completions", timeout=10, trust_env=False, json=body)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def wait(cond, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():
            return time.monotonic() - start
        time.sleep(0.1)
    raise TimeoutError(f"not recovered within {timeout:g} s")


class Load:
    """N clients sending small completions for `standard` through the gateway."""

    def __init__(self, url: str, key: str, clients: int):
        self.url, self.key, self.clients = url, key, clients
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(trust_env=False, timeout=60) as c:
            while not self.stop.is_set():
                try:
                    r = c.post(f"{self.url}/v1/chat/completions",
                               headers={"Authorization": f"Bearer {self.key}"},
                               json={"model": "standard", "messages": [{"role": "user", "content": "hi"}],
                                     "max_tokens": 3})
                    good = r.status_code == 200
                    err = "" if good else f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    good, err = False, type(exc).__name__
                if good:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.errors.append(err)
                time.sleep(0.05)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(90)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--probe-timeout", type=float, default=5.0)
    ap.add_argument("--restart-delay", type=float, default=1.0)
    ap.add_argument("--clients", type=int, default=2)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mlx-stack-recovery-"))
    p = Paths(home=root / "home")
    model = demo_models.build_random_model(root / "tiny", seed=0)
    stack = Stack(tiers=(Tier("standard", "tiny", str(model), free_port()),
                         Tier("fast", "tiny", str(model), free_port())),
                  fallback_order=("standard", "fast"), gateway=Gateway(port=free_port()))
    stack_store.save(p, stack)
    env = {**os.environ, "MLX_STACK_HOME": str(p.home)}
    wd = None
    results: dict[str, object] = {"interval_s": args.interval, "probe_timeout_s": args.probe_timeout,
                                  "restart_delay_s": args.restart_delay, "wedge_probes": 3}
    try:
        t0 = time.monotonic()
        lifecycle.up(p, health_timeout=300)
        results["stack_up_s"] = round(time.monotonic() - t0, 1)
        wd = subprocess.Popen(
            [sys.executable, "-m", "mlx_stack", "watch", "--interval", str(args.interval),
             "--probe-timeout", str(args.probe_timeout), "--restart-delay", str(args.restart_delay)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        wait(lambda: all(state_of(p, s) == "healthy" for s in stack.services), 120)
        tier_url = f"http://127.0.0.1:{stack.tier('standard').port}"
        gateway = f"http://127.0.0.1:{stack.gateway.port}"
        key = secrets.read_secret(p, secrets.GATEWAY_KEY) or ""

        with Load(gateway, key, args.clients) as load:
            wait(lambda: load.ok >= 5, 60)
            old = pid_of(p, "standard")
            assert old is not None
            os.kill(old, signal.SIGKILL)
            took = wait(lambda: pid_of(p, "standard") not in (None, old)
                        and state_of(p, "standard") == "healthy" and answers(tier_url, "standard"), 300)
            time.sleep(2)
        results["kill9_to_healthy_s"] = round(took, 1)
        results["client_requests_ok"] = load.ok
        results["client_requests_failed"] = load.failed
        results["client_errors"] = sorted(set(load.errors))

        old = pid_of(p, "standard")
        assert old is not None
        os.kill(old, signal.SIGSTOP)
        try:
            detect = wait(lambda: pid_of(p, "standard") != old, 300)
            back = wait(lambda: state_of(p, "standard") == "healthy" and answers(tier_url, "standard"), 300)
        finally:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(old, sig)
        results["wedge_detected_s"] = round(detect, 1)
        results["wedge_to_healthy_s"] = round(detect + back, 1)
    finally:
        if wd is not None:
            wd.terminate()
            try:
                wd.wait(20)
            except subprocess.TimeoutExpired:
                wd.kill()
        lifecycle.down(p, grace=5)

    recheck = Policy(interval_s=args.interval, fast_poll_s=min(1.0, args.interval)).recheck_s
    failed, total = results["client_requests_failed"], load.ok + load.failed
    rows = [
        ("stack up (2 tiers + gateway)", f"{results['stack_up_s']} s", ""),
        ("kill -9 tier -> healthy", f"{results['kill9_to_healthy_s']} s", ""),
        ("client requests failed meanwhile", f"{failed} of {total}", "target 0"),
        ("SIGSTOP tier -> detected (stopped)", f"{results['wedge_detected_s']} s",
         f"3 probes: every {args.interval:g} s, {recheck:g} s apart after a failure"),
        ("SIGSTOP tier -> healthy", f"{results['wedge_to_healthy_s']} s", ""),
    ]
    print(f"{'measure':<36}{'value':>12}  note")
    for name, value, note in rows:
        print(f"{name:<36}{value:>12}  {note}")
    out = Path(__file__).parent / "results" / "recovery.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["client_requests_failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
