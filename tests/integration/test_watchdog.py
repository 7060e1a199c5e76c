"""The watchdog against a real stack: two vllm-mlx tiers on a tiny local model and
the real LiteLLM gateway, with real signals (kill -9, SIGSTOP).

One stack is shared by the tests of this module (starting vllm-mlx is the slow
part); they run in order and each leaves the stack healthy for the next.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import demo_models, lifecycle, stack_store
from mlx_stack.system import pidfile, secrets
from tests.helpers import cli_command, cli_env, free_port, run_cli, wait_for

pytestmark = pytest.mark.integration

WATCH_ARGS = ["--interval", "1", "--restart-delay", "0.5", "--probe-timeout", "3", "--wedge-probes", "3",
              "--start-timeout", "240"]
RECOVERY_TIMEOUT_S = 240.0  # a 2-core machine shared with other jobs starts vllm-mlx slowly


def pid_of(p: Paths, name: str) -> int | None:
    rec = pidfile.read(p.run_dir, name)
    return rec.pid if rec is not None and pidfile.is_ours(rec) else None


def wd_state(p: Paths) -> dict[str, Any]:
    try:
        return json.loads((p.run_dir / "watchdog.json").read_text())
    except (OSError, ValueError):
        return {}


def svc_state(p: Paths, name: str) -> str | None:
    return wd_state(p).get("services", {}).get(name, {}).get("state")


def wd_log(p: Paths) -> str:
    try:
        return (p.logs_dir / "watchdog.log").read_text()
    except OSError:
        return ""


def start_watchdog(p: Paths, *extra: str, python: str = sys.executable) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cli_command("watch", *WATCH_ARGS, *extra, python=python),
                            env=cli_env(p, drop=["MLX_STACK_WATCHDOG_LOGGED"]),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def completion_ok(url: str, model: str, key: str | None = None, timeout: float = 30) -> bool:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        r = httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=timeout, trust_env=False,
                       json=body)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


class Stacked:
    def __init__(self, p: Paths, stack: Stack):
        self.p, self.stack = p, stack
        self.watchdog: subprocess.Popen[bytes] | None = None

    def tier_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.stack.tier(name).port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.gateway.port}"

    @property
    def key(self) -> str | None:
        return secrets.read_secret(self.p, secrets.GATEWAY_KEY)

    def healthy(self, name: str, old_pid: int | None = None) -> bool:
        pid = pid_of(self.p, name)
        if pid is None or pid == old_pid or svc_state(self.p, name) != "healthy":
            return False
        if name == "gateway":
            return completion_ok(self.gateway_url, "fast", self.key, timeout=10)
        return completion_ok(self.tier_url(name), name, timeout=10)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stacked]:
    root = tmp_path_factory.mktemp("wd")
    p = Paths(home=root / "home")
    model = demo_models.build_random_model(root / "tiny", seed=0)
    stack = Stack(
        tiers=(Tier("standard", "tiny", str(model), free_port()),
               Tier("fast", "tiny", str(model), free_port())),
        fallback_order=("standard", "fast"),
        gateway=Gateway(port=free_port()),
    )
    stack_store.save(p, stack)
    st = Stacked(p, stack)
    try:
        lifecycle.up(p, health_timeout=300)
        st.watchdog = start_watchdog(p)
        wait_for(lambda: all(svc_state(p, s) == "healthy" for s in stack.services), 120,
                 "the watchdog to see every service healthy")
        yield st
    finally:
        if st.watchdog is not None:
            stop_process(st.watchdog)
        lifecycle.down(p, grace=5)


def test_kill9_tier_under_load_no_failed_request(running: Stacked) -> None:
    p = running.p
    failures: list[str] = []
    ok = [0]
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(trust_env=False, timeout=60) as c:
            while not stop.is_set():
                try:
                    r = c.post(f"{running.gateway_url}/v1/chat/completions",
                               headers={"Authorization": f"Bearer {running.key}"},
                               json={"model": "standard", "messages": [{"role": "user", "content": "hi"}],
                                     "max_tokens": 3})
                    if r.status_code == 200:
                        ok[0] += 1
                    else:
                        failures.append(f"HTTP {r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: ok[0] >= 5, 60, "the client load to get going")
        old = pid_of(p, "standard")
        assert old is not None
        killed_at = time.monotonic()
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: running.healthy("standard", old), RECOVERY_TIMEOUT_S, "standard back to healthy")
        recovered_s = time.monotonic() - killed_at
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join(90)
    print(f"\nkill -9 standard -> healthy again in {recovered_s:.1f} s; "
          f"{ok[0]} client requests ok, {len(failures)} failed")
    assert failures == [], failures[:3]
    assert "standard: exited" in wd_log(p)


def test_sigstop_tier_is_restarted_within_the_stated_probes(running: Stacked) -> None:
    p = running.p
    old = pid_of(p, "fast")
    assert old is not None
    mark = len(wd_log(p))
    stopped_at = time.monotonic()
    os.kill(old, signal.SIGSTOP)
    try:
        wait_for(lambda: pid_of(p, "fast") != old and svc_state(p, "fast") in ("backoff", "starting"),
                 120, "the frozen tier to be stopped")
        detected_s = time.monotonic() - stopped_at
        wait_for(lambda: running.healthy("fast", old), RECOVERY_TIMEOUT_S, "fast back to healthy")
        recovered_s = time.monotonic() - stopped_at
    finally:
        try:
            os.kill(old, signal.SIGCONT)
            os.kill(old, signal.SIGKILL)
        except ProcessLookupError:
            pass
    log = wd_log(p)[mark:]
    probes = re.findall(r"fast: probe failed .*no progress \((\d)/3\)", log)
    assert probes == ["1", "2"], log
    assert "fast: stop (wedged: 3 probes in a row failed with no progress" in log
    print(f"\nSIGSTOP fast -> wedge detected and stopped in {detected_s:.1f} s (3 probes), "
          f"healthy again in {recovered_s:.1f} s")


def test_busy_tier_is_left_alone_and_a_killed_gateway_is_restarted(running: Stacked) -> None:
    # Two independent checks run side by side to save a server start-up's worth of time.
    p = running.p
    pid = pid_of(p, "fast")
    old_gateway = pid_of(p, "gateway")
    assert old_gateway is not None
    mark = len(wd_log(p))
    results: list[int] = []

    def long_request(i: int) -> None:
        r = httpx.post(f"{running.tier_url('fast')}/v1/chat/completions", timeout=180, trust_env=False,
                       json={"model": "fast", "messages": [{"role": "user", "content": f"story {i}"}],
                             "max_tokens": 2000})
        results.append(r.status_code)

    threads = [threading.Thread(target=long_request, args=(i,)) for i in range(2)]
    start = time.monotonic()
    for t in threads:
        t.start()
    os.kill(old_gateway, signal.SIGKILL)
    for t in threads:
        t.join(200)
    took = time.monotonic() - start
    wait_for(lambda: running.healthy("gateway", old_gateway), RECOVERY_TIMEOUT_S, "the gateway back")
    gateway_s = time.monotonic() - start
    log = wd_log(p)[mark:]
    print(f"\n2 long generations took {took:.1f} s, fast left alone; "
          f"kill -9 gateway -> answering again in {gateway_s:.1f} s")
    assert results == [200, 200]
    assert pid_of(p, "fast") == pid
    assert "fast: stop" not in log and "fast: start" not in log
    assert "gateway: exited" in log


def test_a_new_watchdog_adopts_running_services(running: Stacked) -> None:
    p = running.p
    assert running.watchdog is not None
    pids = {s: pid_of(p, s) for s in running.stack.services}
    assert all(pids.values())
    # A second watchdog while one runs: refused (exit 5), or waits with --standby.
    second = run_cli(p, "watch", "--interval", "1", timeout=60)
    assert second.returncode == 5 and "a watchdog is already running" in second.stderr
    standby = start_watchdog(p, "--standby")
    try:
        time.sleep(2)
        assert standby.poll() is None and wd_state(p).get("pid") == running.watchdog.pid
        # The first dies hard (as if crashed; launchd's KeepAlive would start another).
        running.watchdog.kill()
        running.watchdog.wait()
        wait_for(lambda: wd_state(p).get("pid") == standby.pid
                 and all(svc_state(p, s) == "healthy" for s in running.stack.services),
                 60, "the standby watchdog to take over")
        time.sleep(3)  # a few rounds
        assert {s: pid_of(p, s) for s in running.stack.services} == pids, "a service was started twice"
        assert f"pid {standby.pid}" in wd_log(p)
    finally:
        running.watchdog = standby  # the module fixture stops it
