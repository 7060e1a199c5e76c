"""The front door under fire, measured on a real demo stack (three vllm-mlx tiers).

1. 100 clients that read a stream to its finish_reason and close before [DONE], each
   followed by a plain request: how many follow-ups took over 2 s (target 0).
2. A non-stream client that leaves after 0.5 s of a 2,000-token answer: how long the
   tier goes on burning CPU after it left (target <= 1 s), beside the same request sent
   straight to the tier (vllm-mlx aborts it itself) in the same run.
3. kill -9 of a tier under 20 chat streams: streams that end well-formed with a
   finish_reason (target 20/20).
4. 2,500 connections that never send a byte: the slowest of 10 normal requests made
   meanwhile (target <= 1 s).
5. Tracebacks in gateway.log after all of it (target 0).

Prints each figure beside its target with PASS/FAIL; writes benchmarks/results/fire.json.
Usage: python benchmarks/fire.py [--follow-ups N] [--silent N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from common import demo_stack_on_free_ports, report
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, running
from mlx_stack.system import secrets
from mlx_stack.system.limits import raise_open_files

RESULTS = Path(__file__).parent / "results" / "fire.json"


def _cpu(proc: psutil.Process) -> float:
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return total


def _fds(stage: str = "") -> int:
    try:
        n = len(os.listdir("/proc/self/fd"))
    except OSError:
        n = -1
    if stage:
        import resource

        print(f"  open files {stage}: {n} (limit {resource.getrlimit(resource.RLIMIT_NOFILE)})", flush=True)
    return n


def finish_then_close(url: str, auth: dict[str, str], rounds: int) -> dict:
    body = {"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "stream": True}
    times = []
    for _ in range(rounds):
        with httpx.Client(timeout=30, trust_env=False) as c, c.stream(
                "POST", url + "/v1/chat/completions", json=body, headers=auth) as r:
            for line in r.iter_lines():
                if '"finish_reason":"' in line.replace(" ", ""):
                    break
        start = time.monotonic()
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(url + "/v1/chat/completions", headers=auth, trust_env=False, timeout=30,
                       json={**body, "stream": False, "max_tokens": 2})
        times.append(time.monotonic() - start)
    return {"rounds": rounds, "slow_follow_ups": sum(t > 2.0 for t in times),
            "slowest_follow_up_s": round(max(times), 3)}


def departed(url: str, auth: dict[str, str], tier: psutil.Process) -> float:
    """Seconds from the client leaving until the tier's CPU use falls to idle."""
    body = {"model": "fast", "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 2000, "temperature": 0}
    time.sleep(1.0)
    with contextlib.suppress(httpx.TimeoutException):
        httpx.post(url + "/v1/chat/completions", headers=auth, json=body, timeout=0.5, trust_env=False)
    left = time.monotonic()
    last_busy = left
    prev = _cpu(tier)
    while time.monotonic() - left < 6:
        time.sleep(0.1)
        now = _cpu(tier)
        if now - prev > 0.03:  # over 30% of a core in this 100 ms
            last_busy = time.monotonic()
        prev = now
    return round(last_busy - left, 2)


def kill_under_streams(url: str, auth: dict[str, str], pid: int, streams: int = 20) -> dict:
    under_way = threading.Event()
    body = {"model": "standard", "max_tokens": 200, "temperature": 0, "stream": True}

    def one(i: int) -> str:
        text, finish, done = 0, None, False
        try:
            with httpx.Client(timeout=300, trust_env=False) as c, c.stream(
                    "POST", url + "/v1/chat/completions", headers=auth,
                    json={**body, "messages": [{"role": "user", "content": f"Story {i}."}]}) as r:
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        done = True
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        return "error"
                    for choice in event.get("choices") or []:
                        text += bool((choice.get("delta") or {}).get("content"))
                        finish = choice.get("finish_reason") or finish
                    if text >= 3:
                        under_way.set()
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return finish if finish and done else "cut"

    with ThreadPoolExecutor(max_workers=streams) as pool:
        futures = [pool.submit(one, i) for i in range(streams)]
        under_way.wait(120)
        os.killpg(pid, signal.SIGKILL)
        ends = [f.result(timeout=600) for f in futures]
    return {"streams": streams, "well_formed": sum(e in ("length", "stop") for e in ends), "ends": ends}


def silent(url: str, port: int, auth: dict[str, str], n: int) -> dict:
    client = httpx.Client(trust_env=False, timeout=30)  # made before the sockets: no files needed later
    socks = []
    error = None
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError as exc:
            error = f"{exc} after {len(socks)}"
            break
    fds = _fds()
    times = []
    body = {"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    for _ in range(10):
        start = time.monotonic()
        try:
            ok = client.post(url + "/v1/chat/completions", headers=auth, json=body).status_code == 200
        except (httpx.HTTPError, OSError) as exc:
            ok, error = False, error or f"{type(exc).__name__}: {exc}"
        times.append(time.monotonic() - start if ok else 99.0)
    for s in socks:
        s.close()
    client.close()
    return {"opened": len(socks), "open_files": fds, "slowest_request_s": round(max(times), 3),
            "error": error}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--follow-ups", type=int, default=100)
    ap.add_argument("--silent", type=int, default=2500)
    args = ap.parse_args()
    raise_open_files(args.silent * 2 + 1024)  # this process holds the silent connections

    home = Path(tempfile.mkdtemp(prefix="mlx-stack-fire-"))
    os.environ["MLX_STACK_HOME"] = str(home)
    p = Paths(home)
    results: dict[str, object] = {}
    try:
        stack = demo_stack_on_free_ports(p)
        lifecycle.up(p)
        key = secrets.read_secret(p, secrets.GATEWAY_KEY) or ""
        auth = {"Authorization": f"Bearer {key}"}
        url = lifecycle.endpoint(stack).removesuffix("/v1")
        direct = f"http://127.0.0.1:{stack.tier('fast').port}"

        def pid(name: str) -> int:
            record = running.running_record(p, name)
            assert record is not None, name
            return record.pid

        fds: dict[str, int] = {"after_up": _fds("after_up")}
        results["open_files"] = fds
        results["finish_then_close"] = finish_then_close(url, auth, args.follow_ups)
        fds["after_finish_then_close"] = _fds("after_finish_then_close")
        tier = psutil.Process(pid("fast"))
        results["departed_direct_s"] = departed(direct, {}, tier)
        results["departed_front_door_s"] = departed(url, auth, tier)
        fds["after_departed"] = _fds("after_departed")
        results["kill9_under_20_streams"] = kill_under_streams(url, auth, pid("standard"))
        fds["after_kill9"] = _fds("after_kill9")
        results["silent_connections"] = silent(url, stack.gateway.port, auth, args.silent)
        log = p.log_file("gateway").read_text(errors="replace")
        results["tracebacks"] = log.count("Traceback")
    finally:
        lifecycle.down(p, grace=5)
        shutil.rmtree(home, ignore_errors=True)

    ftc, kill = results["finish_then_close"], results["kill9_under_20_streams"]
    quiet = results["silent_connections"]
    assert isinstance(ftc, dict) and isinstance(kill, dict) and isinstance(quiet, dict)
    gone = float(results["departed_front_door_s"])  # type: ignore[arg-type]
    checks = [
        (f"follow-ups over 2 s after {ftc['rounds']} finish-then-close", ftc["slow_follow_ups"], "", "<=", 0,
         ftc["slow_follow_ups"] == 0),
        ("departed non-stream client: tier busy after", gone, "s", "<=", 1, gone <= 1.0),
        ("kill -9 under 20 streams: well-formed ends", kill["well_formed"], "/20", ">=", 20,
         kill["well_formed"] == 20),
        (f"{quiet['opened']} silent connections: slowest request", quiet["slowest_request_s"], "s", "<=", 1,
         quiet["slowest_request_s"] <= 1.0 and quiet["opened"] >= args.silent),
        ("tracebacks in gateway.log", results["tracebacks"], "", "<=", 0, results["tracebacks"] == 0),
    ]
    print(f"  departed client, the same request straight to the tier: busy {results['departed_direct_s']} s; "
          f"slowest follow-up {ftc['slowest_follow_up_s']} s; stream ends {kill['ends']}")
    return report(checks, results, RESULTS)


if __name__ == "__main__":
    raise SystemExit(main())
