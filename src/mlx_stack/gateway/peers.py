"""The front door's peers: other stacks' front doors it serves through (issue 26).

Each peer of the routes file (``peers:`` of stack.yaml) is a :class:`PeerLink`: a pooled
upstream (``upstream.Pool``) whose every request carries the peer's key and the hop
marker (``core.peers.HOP_HEADER``: the peer serves it with its own tiers only, so two
nodes listing each other never bounce a request), over TLS for an ``https`` peer.

:class:`Peers` checks each one's ``/v1/models`` in the background (short timeout; every
``CHECK_EVERY_S`` while it answers, at the end of its cool-down when it does not) and
keeps what it serves: its tiers and aliases join this node's ``/v1/models`` and become
candidates of the requests for them. A peer is usable only after a good check; a request
that fails on it before its first byte cools it down (``core.peers.PeerHealth``: 2 s,
doubling up to 30 s) and goes on to the next candidate, as a local tier's failure does.
Keys are read from the secrets folder (``peer-NAME``) when the routes change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from mlx_stack.core import peers as core
from mlx_stack.core.aliases import match as match_alias
from mlx_stack.core.front_door import Plan, Routes, Upstream
from mlx_stack.core.routing import AUTO
from mlx_stack.core.stack import CLOUD
from mlx_stack.gateway.upstream import Pool
from mlx_stack.json_types import JSONObject

log = logging.getLogger("mlx_stack.front_door")

TICK_S = 0.5  # how often the checker looks for due peers and changed routes
MODELS_ROUTE = "/v1/models"
MAX_MODELS_BYTES = 1024 * 1024
CLOSE_GRACE_S = 60.0


def tls_context(peer: core.Peer) -> ssl.SSLContext:
    """Certificates checked (host name included) against the peer's CA file, else the system's."""
    return ssl.create_default_context(cafile=peer.ca_file)


class PeerLink(Pool):
    """One peer's front door as an upstream of this one."""

    def __init__(self, peer: core.Peer, key: str | None) -> None:
        super().__init__(Upstream(peer.name, f"peer {peer.name}", peer.url), health_route=MODELS_ROUTE,
                         auth=key, headers=[(core.HOP_HEADER.encode(), b"1")],
                         tls=tls_context(peer) if peer.tls else None)
        self.peer = peer
        self.key = key
        self.health = core.PeerHealth(peer.name)
        self.cooling = True  # until its first check answers
        self.outstanding = 0  # requests under way from this node
        self.served = 0  # requests it answered for this node
        if key is None:
            self.health.reason = f"no key stored (secrets/{peer.secret})"

    def failed(self, why: str) -> None:
        """A fault of the peer on the data path (refused, reset, frozen, cut): cool down; the
        checker decides when it is back (no task of its own, unlike a tier's pool)."""
        was = self.health.state
        cool = self.health.failed(time.monotonic(), why)
        self.cooling = True
        self.http.close()
        if was != "cooling":
            log.warning("peer %s failed (%s): skipped for %.0f s", self.name, why, cool)

    async def check(self) -> None:
        """Ask its ``/v1/models`` (fresh connection, short timeout) and update its state."""
        now = time.monotonic()
        if self.key is None:
            self.health.failed(now, self.health.reason or "no key stored", checked=True)
            self.cooling = True
            return
        why, models = await self._models()
        if models is not None:
            if self.health.state != "up":
                log.warning("peer %s answers: %s", self.name, ", ".join(models.tiers) or "no tiers")
            self.health.answered(time.monotonic(), models)
            self.cooling = False
            return
        was = self.health.state
        cool = self.health.failed(time.monotonic(), why, checked=True)
        self.cooling = True
        if was != "cooling" or self.health.failures in (2, 5):  # said once, and when it lasts
            log.warning("peer %s does not answer (%s): checked again in %.0f s", self.name, why, cool)

    async def _models(self) -> tuple[str, core.PeerModels | None]:
        async def get() -> tuple[int, bytes]:
            conn = await self.http.send(b"GET", MODELS_ROUTE, fresh=True)
            try:
                await conn.head
                body = b""
                while chunk := await conn.read_chunk():
                    body += chunk
                    if len(body) > MAX_MODELS_BYTES:
                        break
            finally:
                conn.abort()
            return conn.status, body

        try:
            status, body = await asyncio.wait_for(get(), core.CHECK_TIMEOUT_S)
        except TimeoutError:
            return f"no answer within {core.CHECK_TIMEOUT_S:.0f} s", None
        except OSError as exc:  # refused, reset, TLS (ssl.SSLError), bad HTTP
            return str(exc) or type(exc).__name__, None
        if status == 401:
            return "it refused the key (401)", None
        if status != 200:
            return f"its /v1/models answered HTTP {status}", None
        try:
            models = core.read_models(json.loads(body))
        except (ValueError, RecursionError):
            models = None
        if models is None:
            return "its /v1/models is not a model list", None
        return "", models

    def row(self) -> JSONObject:
        """What status, /metrics and the dashboard show of it (never its key)."""
        h = self.health
        return {"name": self.name, "url": self.peer.url, "state": h.state, "reason": h.reason,
                "tiers": list(h.models.tiers), "aliases": list(h.models.aliases),
                "outstanding": self.outstanding, "served": self.served}


class Peers:
    """Every peer of the current routes, and the task that checks them."""

    def __init__(self, home: Path | None, routes: Callable[[], Routes]) -> None:
        """``home``: the stack's home (the keys); ``routes``: the current routes."""
        self._home = home
        self._routes = routes
        self.links: dict[str, PeerLink] = {}
        self.sticky = core.Sticky()
        self._seen: tuple[core.Peer, ...] | None = None
        self._task: asyncio.Task[None] | None = None
        self.prefer_peers = False

    def _wanted(self) -> tuple[tuple[core.Peer, ...], bool]:
        routes = self._routes()
        return routes.peers, routes.prefer_peers

    def _read_key(self, peer: core.Peer) -> str | None:
        if self._home is None:
            return None
        from mlx_stack.paths import Paths
        from mlx_stack.system import secrets

        try:
            return secrets.read_secret(Paths(self._home), peer.secret)
        except Exception as exc:  # an unreadable key file: said, and the peer stays unused
            log.error("cannot read the key of peer %s: %s", peer.name, exc)
            return None

    def sync(self, *, force: bool = False) -> list[PeerLink]:
        """Links for the routes' peers (keys re-read when the peers changed); the gone ones."""
        wanted, self.prefer_peers = self._wanted()
        if wanted == self._seen and not force:
            return []
        self._seen = wanted
        old, new = self.links, dict[str, PeerLink]()
        for peer in wanted:
            key = self._read_key(peer)
            link = old.get(peer.name)
            if link is not None and link.peer == peer and link.key == key:
                new[peer.name] = link
            else:
                new[peer.name] = PeerLink(peer, key)
        self.links = new
        kept = {id(x) for x in new.values()}
        gone = [x for x in old.values() if id(x) not in kept]
        for link in gone:
            self.sticky.forget_node(link.name)
        return gone

    def start(self) -> None:
        self.sync(force=True)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for link in self.links.values():
            await link.close()

    async def _run(self) -> None:
        while True:
            gone = self.sync()
            if gone:
                asyncio.get_running_loop().create_task(_close_later(gone))
            now = time.monotonic()
            due = [x for x in self.links.values() if x.health.due(now)]
            if due:
                with contextlib.suppress(Exception):
                    await asyncio.gather(*(x.check() for x in due))
            await asyncio.sleep(TICK_S)

    # --- what the data path asks --------------------------------------------------------

    def serving(self, model: str) -> list[tuple[PeerLink, str]]:
        """The usable peers that serve ``model`` (a tier of theirs, or a name one of their
        aliases matches), each with the tier it reaches there."""
        out: list[tuple[PeerLink, str]] = []
        for link in self.links.values():
            if not link.cooling and link.health.usable():
                tier = link.health.serves(model)
                if tier is not None:
                    out.append((link, tier))
        return out

    def only_there(self, model: object, routes: Routes) -> Plan | None:
        """A plan for a model only peers serve: a tier of a peer's (not a local tier, ``auto``
        or the cloud), or a name no local alias matches and a peer's alias does; else None
        (the local plan decides)."""
        if not isinstance(model, str) or model in routes.tiers or model in (AUTO, CLOUD):
            return None
        there = self.serving(model)
        if not there:
            return None
        exact = any(model in link.health.models.tiers for link, _ in there)
        if not exact and match_alias(model, routes.aliases) is not None:
            return None  # this node's alias wins over a peer's
        return Plan(model, model, "peer", (), 0)

    def answered(self, node: str, session: str) -> None:
        """``node`` (a peer, or ``core.peers.LOCAL``) answered; ``session``: the conversation
        it now holds ("" for none)."""
        link = self.links.get(node)
        if link is not None:
            link.served += 1
        self.sticky.remember(session, node)

    def models(self, local: list[JSONObject]) -> list[JSONObject]:
        """``/v1/models``: this node's entries, then what only its (usable) peers serve."""
        answering = {n: x.health.models for n, x in self.links.items() if x.health.usable()}
        if not answering:
            return local
        return core.union_models(local, answering)

    def rows(self) -> list[JSONObject]:
        return [x.row() for x in self.links.values()]


async def _close_later(links: list[PeerLink]) -> None:
    await asyncio.sleep(CLOSE_GRACE_S)
    for link in links:
        await link.close()
