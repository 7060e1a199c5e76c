"""A cluster tier for real (issue 26): two ranks on 127.0.0.1 over the ring backend.

One stack: a demo model (two KV heads, one per rank) served by `mlx.launch` running
`mlx_lm.server` on two local ranks, behind the real front door. The official `openai`
client talks to it (stream and not); `/v1/messages` gets the front door's 400 (the
engine has no Anthropic API and no other tier answers it); kill -9 of one rank makes
the tier crashed and a real watchdog restarts the whole group (no rank left over);
`down` leaves no process.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from mlx_stack.core.cluster import Cluster, ClusterHost
from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle
from mlx_stack.services.demo_models import build_random_model
from mlx_stack.system import ports
from tests.helpers import wait_for
from tests.integration.test_watchdog import RECOVERY_TIMEOUT_S, pid_of, start_watchdog, stop_process
from tests.live_stack import LiveStack as Live
from tests.live_stack import running

pytestmark = pytest.mark.integration

UP_DEADLINE_S = 420
LOCAL = ClusterHost("127.0.0.1", ("127.0.0.1",))


def ranks_of(launcher: int) -> list[psutil.Process]:
    return [c for c in psutil.Process(launcher).children() if "mlx_lm" in " ".join(c.cmdline())]


def cluster_stack(home: Paths) -> Stack:
    model = build_random_model(home.models_dir / "cluster-demo", kv_heads=2)
    ring = ports.free_port()
    tier = Tier(name="big", model="demo/cluster", path=str(model), port=ports.free_port(),
                context_window=2048, cluster=Cluster((LOCAL, LOCAL), ring_port=ring))
    return Stack(tiers=(tier,), fallback_order=("big",), gateway=Gateway(port=ports.free_port()))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = Paths(tmp_path_factory.mktemp("cluster") / "home")
    with running(home, lambda: cluster_stack(home), UP_DEADLINE_S) as stack:
        yield stack


def test_openai_client_through_the_front_door(live: Live) -> None:
    client = live.client()
    got = client.chat.completions.create(model="big", messages=[{"role": "user", "content": "hello"}],
                                         max_tokens=8)
    assert got.choices[0].message.content and got.usage is not None and got.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(model="big", messages=[{"role": "user", "content": "hi"}],
                                                  max_tokens=8, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_messages_gets_a_clear_400(live: Live) -> None:
    headers = {"x-api-key": live.key, "anthropic-version": "2023-06-01"}
    r = httpx.post(live.url + "/v1/messages", headers=headers,
                   json={"model": "big", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
                   timeout=60)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "tier big answers only /v1/chat/completions" in body["error"]["message"]


def test_status_shows_the_cluster_healthy(live: Live) -> None:
    report = lifecycle.status(live.home)
    big = next(s for s in report.services if s.name == "big")
    assert big.state.value in ("healthy", "degraded"), big  # degraded: a completion over 2 s
    launcher = pid_of(live.home, "big")
    assert launcher is not None and len(ranks_of(launcher)) == 2


def test_kill9_rank_crashes_the_tier_and_the_watchdog_restarts_the_group(live: Live) -> None:
    launcher = pid_of(live.home, "big")
    assert launcher is not None
    old = ranks_of(launcher)
    os.kill(old[-1].pid, signal.SIGKILL)
    wait_for(lambda: next(s for s in lifecycle.status(live.home).services if s.name == "big").state.value
             == "crashed", timeout=30, what="the tier shown crashed")
    watchdog = start_watchdog(live.home)
    try:
        def restarted() -> bool:
            pid = pid_of(live.home, "big")
            return pid is not None and pid != launcher and len(ranks_of(pid)) == 2 and next(
                s for s in lifecycle.status(live.home).services if s.name == "big").state.value in (
                "healthy", "degraded")

        wait_for(restarted, timeout=RECOVERY_TIMEOUT_S, every=2, what="the cluster tier restarted")
    finally:
        stop_process(watchdog)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in old), "a rank was left over"
    got = live.client().chat.completions.create(model="big", messages=[{"role": "user", "content": "again"}],
                                                max_tokens=4)
    assert got.choices[0].message.content is not None


def test_down_leaves_no_rank(live: Live) -> None:
    launcher = pid_of(live.home, "big")
    assert launcher is not None
    ranks = ranks_of(launcher)
    lifecycle.down(live.home, grace=5)
    time.sleep(0.5)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in [*ranks]), "orphan rank"
    assert not psutil.pid_exists(launcher) or psutil.Process(launcher).status() == psutil.STATUS_ZOMBIE
