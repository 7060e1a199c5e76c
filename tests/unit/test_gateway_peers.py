"""gateway/peers.py against small stand-in front doors: a good one, one that refuses the key,
one that answers garbage, one that stalls, one over TLS; the hop marker and the key on the
wire; routes changes picked up; the union of /v1/models."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from mlx_stack.core import peers as core
from mlx_stack.core.front_door import Routes, Upstream
from mlx_stack.core.routing import default_rules
from mlx_stack.gateway.peers import PeerLink, Peers
from mlx_stack.paths import Paths
from mlx_stack.system import secrets
from tests.helpers import JSONHandler, self_signed

KEY = "sk-peer-key-0123456789abcdef"
MODELS = {"object": "list", "data": [{"id": "fast", "context_length": 2048}, {"id": "auto"},
                                     {"id": "claude-*haiku*", "alias_of": "fast"}]}


class StandIn:
    """A front door's /v1/models in the given mood; records the headers it saw."""

    def __init__(self, mood: str, tls: tuple[Path, Path] | None = None) -> None:
        self.mood = mood
        self.seen: list[dict[str, str]] = []
        outer = self

        class Handler(JSONHandler):
            def do_GET(self) -> None:
                outer.seen.append({k.lower(): v for k, v in self.headers.items()})
                if outer.mood == "stall":
                    time.sleep(5)
                    return
                if outer.mood == "garbage":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n{{{{{")
                    return
                if outer.mood == "not-http":
                    self.wfile.write(b"\x00\x01 hello\r\n\r\n")
                    self.close_connection = True
                    return
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    self._reply(401, {"error": "no"})
                    return
                self._reply(200, MODELS)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def servers() -> Iterator[list[StandIn]]:
    made: list[StandIn] = []
    yield made
    for s in made:
        s.close()


def _check(peer: core.Peer, key: str | None = KEY) -> PeerLink:
    async def main() -> PeerLink:
        link = PeerLink(peer, key)
        await link.check()
        await link.close()
        return link

    return asyncio.run(main())


def test_a_peer_that_answers(servers: list[StandIn]) -> None:
    s = StandIn("ok")
    servers.append(s)
    link = _check(core.Peer("b", s.url))
    assert link.health.state == "up" and not link.cooling
    assert dict(link.health.models.tiers) == {"fast": 2048}
    assert s.seen[0]["authorization"] == f"Bearer {KEY}" and s.seen[0][core.HOP_HEADER] == "1"
    row = link.row()
    assert row["state"] == "up" and row["tiers"] == ["fast"] and KEY not in json.dumps(row)


@pytest.mark.parametrize(("mood", "why"), [("garbage", "not a model list"), ("not-http", ""),
                                           ("wrong-key", "refused the key (401)")])
def test_bad_answers_cool_it_down(servers: list[StandIn], mood: str, why: str) -> None:
    s = StandIn(mood)
    servers.append(s)
    link = _check(core.Peer("b", s.url), key="sk-wrong-key-000000000" if mood == "wrong-key" else KEY)
    assert link.health.state == "cooling" and link.cooling and why in link.health.reason
    assert link.health.until - time.monotonic() <= core.COOL_MIN_S


def test_a_stalled_peer_is_given_up_quickly(servers: list[StandIn]) -> None:
    s = StandIn("stall")
    servers.append(s)
    began = time.monotonic()
    link = _check(core.Peer("b", s.url))
    assert time.monotonic() - began < core.CHECK_TIMEOUT_S + 1.5
    assert link.health.state == "cooling" and "no answer within" in link.health.reason


def test_a_closed_port_and_no_key() -> None:
    from mlx_stack.system.ports import free_port

    link = _check(core.Peer("b", f"http://127.0.0.1:{free_port()}"))
    assert link.health.state == "cooling" and "refused" in link.health.reason
    link = _check(core.Peer("b", "http://127.0.0.1:1"), key=None)
    assert link.cooling and "no key stored (secrets/peer-b)" in link.health.reason


def test_tls_is_checked_against_the_ca_file(servers: list[StandIn], cert: tuple[Path, Path]) -> None:
    s = StandIn("ok", tls=cert)
    servers.append(s)
    link = _check(core.Peer("b", s.url, str(cert[0])))
    assert link.health.state == "up", link.health.reason
    untrusted = _check(core.Peer("b", s.url))  # the system's CAs do not know a self-signed certificate
    assert untrusted.health.state == "cooling" and "TLS failed (" in untrusted.health.reason


def test_peers_follow_the_routes_and_join_the_model_list(servers: list[StandIn], tmp_path: Path) -> None:
    good, bad = StandIn("ok"), StandIn("garbage")
    servers += [good, bad]
    home = Paths(tmp_path)
    secrets.write_secret(home, core.secret_name("b"), KEY)
    secrets.write_secret(home, core.secret_name("c"), KEY)
    tiers = {"fast": Upstream("fast", "org/m", "http://127.0.0.1:1")}
    base = Routes(tiers, ("fast",), default_rules(["fast"]))
    current = [Routes(base.tiers, base.fallback_order, base.rules,
                      peers=(core.Peer("b", good.url), core.Peer("c", bad.url)))]

    async def main() -> None:
        peers = Peers(tmp_path, lambda: current[0])
        peers.start()
        try:
            for _ in range(50):
                if peers.links["b"].health.state == "up" and peers.links["c"].health.state == "cooling":
                    break
                await asyncio.sleep(0.1)
            assert [link.name for link, _ in peers.serving("fast")] == ["b"]
            assert [(link.name, tier) for link, tier in peers.serving("claude-3-haiku")] == [("b", "fast")]
            assert peers.serving("other") == []
            local = [{"id": "standard", "object": "model"}]
            ids = [(e["id"], e.get("peer")) for e in peers.models(local)]
            assert ids == [("standard", None), ("fast", "b"), ("claude-*haiku*", "b")]
            current[0] = base  # the peers were removed from stack.yaml
            await asyncio.sleep(0.8)
            assert peers.links == {} and peers.serving("fast") == []
        finally:
            await peers.stop()

    asyncio.run(main())


class _Link:
    def __init__(self, name: str) -> None:
        self.name = name


class _FakePeers:
    """What Chains.with_peers asks of gateway.peers.Peers."""

    def __init__(self, serving: dict[str, list[str]], prefer: bool = False) -> None:
        self._serving = serving  # tier -> peers serving it
        self.sticky = core.Sticky()
        self.prefer_peers = prefer
        self.links = {n: _Link(n) for ns in serving.values() for n in ns}

    def serving(self, model: str) -> list[tuple[_Link, str]]:
        return [(self.links[n], model) for n in self._serving.get(model, [])]


def _chains(peers: _FakePeers, cooling: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from mlx_stack.gateway.chain import Chains
    from mlx_stack.gateway.metrics import Metrics

    names = ("fast", "standard")
    tiers = {n: Upstream(n, f"org/{n}", f"http://127.0.0.1:{i + 1}") for i, n in enumerate(names)}
    pools = {n: SimpleNamespace(cooling=n in cooling, upstream=u, name=n) for n, u in tiers.items()}
    routes = SimpleNamespace(current=Routes(tiers, names, default_rules(list(tiers))), pools=pools)
    return Chains(routes, Metrics(), None, peers=peers)  # type: ignore[arg-type]


def test_the_chain_puts_peers_beside_each_tier() -> None:
    from mlx_stack.core.front_door import Plan

    peers = _FakePeers({"fast": ["b", "c"], "standard": ["c"]})
    chains = _chains(peers)
    p = Plan("fast", "fast", "direct", ("fast", "standard"), 10)
    names = [c.name for c in chains.with_peers(p, "")]
    assert names == ["fast", "fast@b", "fast@c", "standard", "standard@c"]
    chains.outstanding.update({"fast": 2, "fast@b": 1})  # fewest under way first
    assert [c.name for c in chains.with_peers(p, "")][:3] == ["fast@c", "fast@b", "fast"]
    peers.sticky.remember("conv", "b")  # the conversation's node first
    assert [c.name for c in chains.with_peers(p, "conv")][:3] == ["fast@b", "fast@c", "fast"]
    c = chains.with_peers(p, "")[0]
    assert c.node == "c" and c.sent == "fast" and c.tier == "fast"
    chains.outstanding.clear()
    chains.peers.prefer_peers = True  # type: ignore[union-attr]
    assert [c.name for c in chains.with_peers(p, "")][:3] == ["fast@b", "fast@c", "fast"]


def test_a_cooling_local_tier_keeps_its_peers_in_place() -> None:
    from mlx_stack.core.front_door import Plan

    chains = _chains(_FakePeers({"fast": ["b"]}), cooling=("fast",))
    p = Plan("fast", "fast", "direct", ("fast", "standard"), 10)
    assert [c.name for c in chains.with_peers(p, "")] == ["fast@b", "standard"]
    only = Plan("big", "big", "peer", (), 0)
    chains = _chains(_FakePeers({"big": ["b", "c"]}))
    assert [c.name for c in chains.with_peers(only, "")] == ["big@b", "big@c"]
