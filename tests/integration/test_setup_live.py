"""`setup --add` / `setup --remove` on a live stack: real vllm-mlx tiers behind the front door.

While setup adds and then removes a tier, clients keep calling the endpoint (plain and
streaming); the untouched tiers and the front door keep their pids (it re-reads its
routes in place), and not one request fails. No cloud key is stored: LiteLLM never runs.
The added model is pulled on the way (from a local stand-in of the hub) and served from
its Hugging Face cache snapshot.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_store
from mlx_stack.services.demo_models import build_random_model
from mlx_stack.system import pidfile, ports, secrets
from tests.fakehub import FakeHub, FakeRepo
from tests.helpers import cli_env, hub_env, run_cli

pytestmark = pytest.mark.integration

DEADLINE_S = 480


@dataclass
class Live:
    home: Paths
    hub: FakeHub
    hf_home: Path
    key: str = ""
    endpoint: str = ""

    def pid(self, service: str) -> int | None:
        record = pidfile.read(self.home.run_dir, service)
        return record.pid if record is not None else None

    def pids(self) -> dict[str, int | None]:
        return {s: self.pid(s) for s in ("standard", "fast", "longctx", "gateway")}

    def ask(self, model: str, timeout: float = 60) -> httpx.Response:
        return httpx.post(f"{self.endpoint}/chat/completions", timeout=timeout, trust_env=False,
                          headers={"Authorization": f"Bearer {self.key}"},
                          json={"model": model, "max_tokens": 2,
                                "messages": [{"role": "user", "content": "hello"}]})


def _cli(home: Paths, *args: str, hub: FakeHub | None = None, hf_home: Path | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = cli_env(home)
    if hub is not None and hf_home is not None:
        env = hub_env(hub.url, hf_home, base=env)
    return run_cli(home, *args, env=env, timeout=DEADLINE_S)


@dataclass
class Poller:
    """Calls the endpoint in a loop; records every failure."""

    live: Live
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    stream: bool = False

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if self.stream:
                    self._one_stream()
                else:
                    r = self.live.ask("standard", timeout=30)
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"HTTP {r.status_code}: {r.text[:120]}")
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
            time.sleep(0.1)

    def _one_stream(self) -> None:
        body = {"model": "fast", "max_tokens": 4, "stream": True,
                "messages": [{"role": "user", "content": "hello"}]}
        with httpx.stream("POST", f"{self.live.endpoint}/chat/completions", json=body, timeout=30,
                          trust_env=False, headers={"Authorization": f"Bearer {self.live.key}"}) as r:
            text = "".join(r.iter_text())
        broken = _error_events(text)
        if r.status_code == 200 and text.rstrip().endswith("data: [DONE]") and not broken:
            self.ok += 1
        else:
            self.failures.append(f"stream HTTP {r.status_code}: {(broken or [text])[0][-200:]}")


def _error_events(text: str) -> list[str]:
    """The stream's events that are not a chunk: an error event, or garbage. (The demo
    model's random text may hold the token `error` itself: `"content":"error"`.)"""
    found: list[str] = []
    for line in text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        try:
            event = json.loads(line.removeprefix("data: "))
        except ValueError:
            event = None
        if not isinstance(event, dict) or "error" in event:
            found.append(line)
    return found


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("setup-live")
    home = Paths(root / "home")
    with FakeHub() as hub:
        hub.repos["org/extra"] = FakeRepo.from_dir(build_random_model(root / "extra-model", seed=7))
        live = Live(home, hub, root / "hf")
        try:
            assert _cli(home, "config", "set", "litellm-port", str(ports.free_port())).returncode == 0
            r = _cli(home, "setup", "--demo")
            assert r.returncode == 0, r.stderr
            live.key = secrets.read_secret(home, secrets.GATEWAY_KEY) or ""
            live.endpoint = lifecycle.endpoint(stack_store.load(home))
            yield live
        finally:
            lifecycle.down(home, grace=5)
            for proc in psutil.process_iter(["cmdline"]):  # never leave a server behind
                try:
                    if str(home.home) in " ".join(proc.info["cmdline"] or []):
                        proc.kill()
                except psutil.NoSuchProcess:
                    continue


def test_add_then_remove_a_tier_on_a_live_stack(live: Live) -> None:
    before = live.pids()
    assert all(before.values()), before
    assert live.pid("litellm") is None  # no cloud key: LiteLLM is not started
    assert "litellm" not in {s.name for s in lifecycle.status(live.home).services}
    assert live.ask("standard").status_code == 200
    pollers = [Poller(live), Poller(live, stream=True)]
    threads = [threading.Thread(target=p.run, daemon=True) for p in pollers]
    for thread in threads:
        thread.start()
    try:
        started = time.monotonic()
        added = _cli(live.home, "setup", "--add", "org/extra", "--as", "extra", hub=live.hub,
                     hf_home=live.hf_home)
        add_s = time.monotonic() - started
        assert added.returncode == 0, added.stderr
        assert "gateway reloaded" in added.stderr
        assert "standard, fast, longctx kept serving" in added.stderr
        assert live.pids() == before  # untouched tiers and the gateway: same processes
        extra_pid = live.pid("extra")
        assert extra_pid is not None and psutil.pid_exists(extra_pid)
        r = live.ask("extra")
        assert r.status_code == 200, r.text
        stack = stack_store.load(live.home)
        assert stack.tier_names == ["standard", "fast", "longctx", "extra"]
        assert stack.tier("extra").path.startswith(str(live.hf_home / "hub" / "models--org--extra"))

        started = time.monotonic()
        removed = _cli(live.home, "setup", "--remove", "extra")
        remove_s = time.monotonic() - started
        assert removed.returncode == 0, removed.stderr
        assert live.pids() == before
        assert live.pid("extra") is None
        deadline = time.monotonic() + 15
        while psutil.pid_exists(extra_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc_gone = not psutil.pid_exists(extra_pid) or \
            psutil.Process(extra_pid).status() == psutil.STATUS_ZOMBIE
        assert proc_gone
        assert live.ask("extra").status_code in (400, 404)  # no such model any more
        assert stack_store.load(live.home).tier_names == ["standard", "fast", "longctx"]
        time.sleep(1.0)  # a few more requests after the change
    finally:
        for poller, thread in zip(pollers, threads, strict=True):
            poller.stop.set()
            thread.join(60)
    for poller in pollers:
        assert poller.failures == [], poller.failures[:5]
        assert poller.ok >= 5
    print(f"setup --add {add_s:.1f} s, --remove {remove_s:.1f} s; "
          f"{sum(p.ok for p in pollers)} requests answered, 0 failed")
