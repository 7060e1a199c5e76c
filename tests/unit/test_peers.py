"""core/peers.py: URLs and names, health and cool-down, the node order, stickiness, the hop rule;
stack.yaml's peers and gateway keys; the routes document."""

from __future__ import annotations

import json

import pytest

from mlx_stack.core import peers as core
from mlx_stack.core.front_door import parse_routes
from mlx_stack.core.gateway_config import routes_for
from mlx_stack.core.stack import Gateway, Stack, Tier, dump_stack, parse_stack
from mlx_stack.errors import ConflictError, StateError, UsageError


@pytest.mark.parametrize(("raw", "url"), [
    ("http://mac-b.local:4000", "http://mac-b.local:4000"),
    ("  HTTPS://Mac-B.Local:4443/v1/ ", "https://mac-b.local:4443"),
    ("http://10.0.0.2:4000/", "http://10.0.0.2:4000"),
    ("http://[fe80::1]:4000", "http://[fe80::1]:4000"),
])
def test_urls(raw: str, url: str) -> None:
    assert core.parse_url(raw) == url


@pytest.mark.parametrize("raw", ["", "ftp://a:1", "a:1", "http://a", "http://a:0", "http://a:70000",
                                 "http://u:p@a:1", "http://a:1/x", "http://a:1?q=1", "http://a:1#f",
                                 "http://a\x1b:1", "http://" + "a" * 3000 + ":1"])
def test_bad_urls(raw: str) -> None:
    with pytest.raises(UsageError) as err:
        core.parse_url(raw)
    assert err.value.hint and "\x1b" not in err.value.message


def test_names() -> None:
    assert core.name_from_url("http://Mac-Studio.local:4000") == "mac-studio"
    assert core.name_from_url("http://10.0.0.2:4000") == "peer-10-0-0-2"
    assert core.name_from_url("http://local:4000") == "peer-local"
    assert core.name_problem("local") and core.name_problem("Bad") and core.name_problem("a" * 33)
    assert core.name_problem("mac-b") is None


def test_new_peers_are_checked() -> None:
    have = (core.Peer("b", "http://b:4000"),)
    with pytest.raises(ConflictError):
        core.check_new(have, "b", "http://c:4000")
    with pytest.raises(ConflictError):
        core.check_new(have, "c", "http://b:4000")
    with pytest.raises(UsageError):
        core.check_new(have, "auto", "http://c:4000")
    core.check_new(have, "c", "http://c:4000")


def test_keys() -> None:
    assert core.parse_key(" sk-abc\n") == "sk-abc"
    for bad in ("", "  ", "a b", "é", "x" * 600):
        with pytest.raises(UsageError):
            core.parse_key(bad)


def test_read_models() -> None:
    doc = {"object": "list", "data": [
        {"id": "fast", "context_length": 2048}, {"id": "auto"}, {"id": "cloud"},
        {"id": "claude-*haiku*", "alias_of": "fast"}, {"id": "gpt-*", "alias_of": "standard"},
        {"id": "far", "peer": "c"}, {"id": "embed"}]}
    models = core.read_models(doc)
    assert models is not None
    assert dict(models.tiers) == {"fast": 2048, "embed": None}
    assert dict(models.aliases) == {"claude-*haiku*": "fast"}  # the alias of a tier it lacks is dropped
    assert core.read_models({"data": "x"}) == core.PeerModels()
    for bad in (None, [], "x", {"data": [1]}, {"object": "list"}):
        assert core.read_models(bad) is None  # type: ignore[arg-type]


def test_health_and_cool_down() -> None:
    h = core.PeerHealth("b")
    assert not h.usable() and h.due(0.0)
    h.answered(10.0, core.PeerModels({"fast": None}, {"claude-*haiku*": "fast"}))
    assert h.usable() and not h.due(12.0) and h.due(10.0 + core.CHECK_EVERY_S)
    assert h.serves("fast") == "fast" and h.serves("Claude-3-5-Haiku") == "fast" and h.serves("x") is None
    assert h.failed(20.0, "refused") == core.COOL_MIN_S
    assert not h.usable() and h.reason == "refused" and not h.due(21.0) and h.due(22.0)
    assert h.failed(21.0, "again") == pytest.approx(1.0)  # a request during the cool-down: not longer
    assert h.failed(22.0, "check", checked=True) == 2 * core.COOL_MIN_S  # the check that failed: doubles
    for t in range(10):
        h.failed(100.0 + 100 * t, "down", checked=True)
    assert h.until - (100.0 + 900) == core.COOL_MAX_S
    h.answered(2000.0, core.PeerModels())
    assert h.usable() and h.failures == 0 and h.failed(2001.0, "x") == core.COOL_MIN_S


def test_node_order() -> None:
    L = core.LOCAL
    assert core.order_nodes({L: 0, "b": 0}) == [L, "b"]  # a tie: this node first
    assert core.order_nodes({L: 0, "b": 0}, prefer_peers=True) == ["b", L]
    assert core.order_nodes({L: 3, "b": 1, "c": 1}) == ["b", "c", L]
    assert core.order_nodes({L: 3, "b": 1}, prefer_peers=True) == ["b", L]
    assert core.order_nodes({L: 0, "b": 5}, sticky="b") == ["b", L]  # the conversation's node first
    assert core.order_nodes({L: 0, "b": 5}, sticky="gone") == [L, "b"]
    assert core.order_nodes({"b": 2, "c": 1}) == ["c", "b"]  # not served here


def test_sticky() -> None:
    s = core.Sticky(kept=2)
    s.remember("a", "b")
    s.remember("", "b")  # no conversation: nothing kept
    s.remember("c", core.LOCAL)
    assert s.get("a") == "b" and len(s) == 2
    s.remember("d", "b")
    assert s.get("a") is None and s.get("d") == "b" and s.get("") is None  # least recently used gone
    s.forget_node("b")
    assert s.get("d") is None and s.get("c") == core.LOCAL


def test_hop_rule() -> None:
    assert core.may_forward([(b"authorization", b"Bearer x")])
    assert not core.may_forward([(b"x-mlx-stack-hop", b"1")])


def test_union_models() -> None:
    local = [{"id": "fast", "object": "model"}, {"id": "auto"}]
    b = core.PeerModels({"fast": 2048, "big": 32768}, {"big-*": "big"})
    c = core.PeerModels({"big": None, "other": None}, {})
    merged = core.union_models(local, {"c": c, "b": b})
    ids = [(e["id"], e.get("peer")) for e in merged]
    assert ids == [("fast", None), ("auto", None), ("big", "b"), ("big-*", "b"), ("other", "c")]
    assert merged[2]["context_length"] == 32768 and merged[3]["alias_of"] == "big"


def _stack(**kw: object) -> Stack:
    return Stack((Tier("fast", "org/m", "/m", 8001),), ("fast",), **kw)  # type: ignore[arg-type]


def test_stack_yaml_round_trip() -> None:
    stack = _stack(gateway=Gateway("0.0.0.0", 4000, "/c.pem", "/k.pem", True),
                   peers=(core.Peer("b", "https://b:4000", "/ca.pem"), core.Peer("c", "http://c:4000")))
    data = dump_stack(stack)
    assert data["gateway"] == {"host": "0.0.0.0", "port": 4000, "tls-cert": "/c.pem", "tls-key": "/k.pem",
                               "prefer-peers": True}
    assert data["peers"] == [{"name": "b", "url": "https://b:4000", "ca_file": "/ca.pem"},
                             {"name": "c", "url": "http://c:4000"}]
    assert parse_stack(data) == stack
    assert "peers" not in dump_stack(_stack())
    assert dump_stack(_stack())["gateway"] == {"host": "127.0.0.1", "port": 4000}


@pytest.mark.parametrize(("peers", "where"), [
    ([{"name": "b"}], "peers[0].url"),
    ([{"name": "B", "url": "http://b:1"}], "peers[0].name"),
    ([{"name": "b", "url": "gopher://b:1"}], "peers[0].url"),
    ([{"name": "b", "url": "http://b:1"}, {"name": "b", "url": "http://c:1"}], "peers[1].name"),
    ([{"name": "b", "url": "http://b:1", "key": "sk-x"}], "peers[0]"),
    (["b"], "peers[0]"),
])
def test_bad_peers_sections(peers: object, where: str) -> None:
    data = dump_stack(_stack())
    data["peers"] = peers  # type: ignore[assignment]
    with pytest.raises(StateError) as err:
        parse_stack(data)
    assert where in err.value.message


def test_unknown_gateway_keys_are_refused() -> None:
    data = dump_stack(_stack())
    data["gateway"] = {"host": "127.0.0.1", "port": 4000, "tls_cert": "/c"}
    with pytest.raises(StateError, match="gateway"):
        parse_stack(data)


def test_routes_carry_the_peers() -> None:
    stack = _stack(peers=(core.Peer("b", "http://b:4000"),), gateway=Gateway(prefer_peers=True))
    doc = json.loads(json.dumps(routes_for(stack, {"fast": 2048}, None)))
    routes = parse_routes(doc)
    assert routes.peers == (core.Peer("b", "http://b:4000"),) and routes.prefer_peers
    plain = json.loads(json.dumps(routes_for(_stack(), {"fast": 2048}, None)))
    assert "peers" not in plain and parse_routes(plain).peers == ()
