"""The front door: a plain ASGI callable on the gateway port. Routes only.

Per request: check the stack key, then the route: a proxied path has its body read
(bounded) and parsed once (:mod:`mlx_stack.gateway.request`) and goes to its chain of
attempts (:mod:`mlx_stack.gateway.chain`; embeddings and rerank through
:mod:`mlx_stack.gateway.retrieval`); the rest (liveness, models, metrics, the dashboard)
is answered here. Bodies go upstream as the client sent them (re-encoded only when the
model name must change) and come back as bytes through :mod:`mlx_stack.gateway.relay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mlx_stack.core.controls import escape_controls
from mlx_stack.core.front_door import Routes, shape_problem
from mlx_stack.core.metrics_text import cache_gauges, cache_stats, peer_gauges, tier_gauges
from mlx_stack.core.peers import may_forward
from mlx_stack.core.stack import CLOUD
from mlx_stack.gateway import replies, retrieval
from mlx_stack.gateway.chain import Chains
from mlx_stack.gateway.dashboard import PAGES, VIEW_HEADERS, VIEW_ROUTE, Dashboard
from mlx_stack.gateway.limits import Connections
from mlx_stack.gateway.metrics import Metrics
from mlx_stack.gateway.on_demand import OnDemand
from mlx_stack.gateway.peers import Peers
from mlx_stack.gateway.request import (
    BODY_STALL_S,
    MAX_BODY,
    STALLED,
    TOO_LARGE,
    is_probe,
    parse_body,
    read_body,
)
from mlx_stack.gateway.routes_file import RoutesFile

if TYPE_CHECKING:
    from mlx_stack.gateway.asgi import Receive, Scope, Send
    from mlx_stack.json_types import JSONObject

log = logging.getLogger("mlx_stack.front_door")

PROXIED = frozenset({
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
    "/v1/messages", "/v1/messages/count_tokens",
    *retrieval.PATHS,  # /v1/embeddings, /v1/rerank, /rerank (issue 25)
})
LIVENESS = "/health"
# MLX_STACK_GATEWAY_DEBUG_MODULES=1 (tests only): GET /debug/modules (with the key) lists the
# mlx_stack modules this process has loaded, so a test can check what the data plane imports.
DEBUG_MODULES = os.environ.get("MLX_STACK_GATEWAY_DEBUG_MODULES") == "1"
CACHE_STATS_S = 0.5  # /metrics waits this long at most for a tier's own cache counts
AUTH_LOG_EVERY_S = 10.0
__all__ = ["FrontDoor", "models_list", "parse_body"]


class FrontDoor:
    def __init__(self, routes: RoutesFile, key: str, metrics: Metrics | None = None,
                 home: Path | None = None) -> None:
        self.routes = routes
        self._key = key.encode()
        self.metrics = metrics or Metrics()
        # On-demand tiers are started and stopped from here (needs the stack's home).
        self.on_demand = OnDemand(home, routes, self.metrics) if home is not None else None
        self.dashboard = Dashboard(self.metrics, routes, self.on_demand)
        self._refused = 0
        self._refused_logged = 0.0
        self.connections = Connections()
        # Other stacks' front doors (issue 26): their keys are read from the stack's home.
        self.peers = Peers(home, lambda: self.routes.current)
        self.dashboard.peers = self.peers.rows
        self.chains = Chains(routes, self.metrics, self.on_demand, peers=self.peers)

    # --- ASGI entry -------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.routes.start()
                self.peers.start()
                if self.on_demand is not None:
                    self.on_demand.start()
                self.dashboard.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.dashboard.stop()
                if self.on_demand is not None:
                    await self.on_demand.stop()
                await self.peers.stop()
                await self.routes.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn = self.connections.begin(scope.get("client"))
        try:
            await self._route(scope, receive, send)
        except Exception as exc:  # a bug of ours: one escaped line in the log, a 500 if we can
            log.error("internal error on %s %s: %s: %s", scope.get("method"),
                      escape_controls(scope.get("path", ""), one_line=True), type(exc).__name__,
                      escape_controls(str(exc), one_line=True))
            if os.environ.get("MLX_STACK_DEBUG"):
                log.exception("traceback")
            with contextlib.suppress(Exception):  # refused by the server if the answer began
                await replies.error(send, 500, "internal error in the front door", kind="server")
        finally:
            self.connections.end(conn)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        anthropic = path.startswith("/v1/messages")
        if path == LIVENESS and method in ("GET", "HEAD"):
            await replies.send_json(send, 200, {"status": "ok"})
            return
        headers = scope["headers"]
        if not self._authorized(headers):
            if path in PAGES and method == "GET":  # the dashboard page holds no data: no key needed
                await self._page(path, send)
                return
            self._log_refused(path, scope.get("client"))
            await replies.error(send, 401, "invalid or missing API key: send the stack key as "
                                "`Authorization: Bearer KEY` or `x-api-key: KEY`",
                                anthropic=anthropic, code="invalid_api_key")
            return
        if path in PROXIED:
            if method != "POST":
                await replies.error(send, 405, f"{path} takes POST", anthropic=anthropic)
                return
            await self._proxy(path, headers, receive, send, anthropic)
        elif path == "/v1/models" and method == "GET":
            models = models_list(self.routes.current)
            if may_forward(headers):  # a peer asking (the hop marker) gets this node's own only
                models = self.peers.models(models)
            await replies.send_json(send, 200, {"object": "list", "data": models})
        elif path == "/metrics" and method == "GET":
            caches = await self._tier_caches()
            await replies.send_bytes(send, 200, self.metrics_text(caches).encode(),
                                     b"text/plain; version=0.0.4; charset=utf-8")
        elif path == VIEW_ROUTE and method == "GET":
            await replies.send_bytes(send, 200, await self.dashboard.view(), extra=VIEW_HEADERS)
        elif path in PAGES and method == "GET":
            await self._page(path, send)
        elif DEBUG_MODULES and path == "/debug/modules" and method == "GET":
            loaded = sorted(m for m in sys.modules if m == "mlx_stack" or m.startswith("mlx_stack."))
            await replies.send_json(send, 200, {"modules": loaded})
        else:
            await replies.error(send, 404, f"no route {method} {path}", anthropic=anthropic)

    async def _tier_caches(self) -> dict[str, tuple[float, float]]:
        """Each answering tier's prefix-cache (hits, misses), from its own /metrics."""
        pools = [pool for name, pool in self.routes.pools.items() if name != CLOUD and not pool.cooling]
        pages = await asyncio.gather(*(pool.fetch("/metrics", CACHE_STATS_S) for pool in pools))
        out: dict[str, tuple[float, float]] = {}
        for pool, page in zip(pools, pages, strict=True):
            stats = cache_stats(page) if page else None
            if stats is not None:
                out[pool.name] = stats
        return out

    def metrics_text(self, caches: dict[str, tuple[float, float]] | None = None) -> str:
        routes = self.routes.current
        pools = self.routes.pools
        names = [*routes.tiers, *([CLOUD] if routes.cloud is not None else [])]
        od = self.on_demand
        states: dict[str, str] = {}
        for n in names:
            pool = pools.get(n)
            lazy = od is not None and n in routes.tiers and routes.tiers[n].on_demand
            if lazy and od is not None and n not in od.awake:
                states[n] = "asleep"
            else:
                states[n] = "cooling" if pool is not None and pool.cooling else "up"
        gates = self.chains.gates
        gauges = tier_gauges(states, {n: g.inflight for n, g in gates.items()},
                             {n: len(g.waiting) for n, g in gates.items()},
                             len(self.connections.open), self.connections.busy)
        if caches:
            gauges += cache_gauges(caches)
        if self.peers.links:
            gauges += peer_gauges(self.peers.rows())
        return self.metrics.text(names, gauges)

    async def _page(self, path: str, send: Send) -> None:
        body, headers = self.dashboard.page(path)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    # --- auth ---------------------------------------------------------------------------

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key):
                    return True
            elif name == b"x-api-key" and hmac.compare_digest(value.strip(), self._key):
                return True
        return False

    def _log_refused(self, path: str, client: tuple[str, int] | None) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged >= AUTH_LOG_EVERY_S:
            who = client[0] if client else "?"
            log.warning("refused %d request(s) without a valid key (last: %s from %s)",
                        self._refused, escape_controls(path[:64], one_line=True), who)
            self._refused = 0
            self._refused_logged = now

    # --- the data path ------------------------------------------------------------------

    async def _proxy(self, path: str, headers: list[tuple[bytes, bytes]], receive: Receive, send: Send,
                     anthropic: bool) -> None:
        body = await read_body(receive)
        if body is None:  # the client left while sending it
            return
        if body is TOO_LARGE:
            await replies.error(send, 413, f"request body over {MAX_BODY // (1024 * 1024)} MB",
                                anthropic=anthropic)
            return
        if body is STALLED:
            await replies.error(send, 408, f"the request body stalled for {BODY_STALL_S:.0f} s",
                                anthropic=anthropic)
            return
        data, problem = parse_body(body)
        if problem is None and data is not None:
            problem = shape_problem(path, data)
        if problem is not None or data is None:
            await replies.error(send, 400, problem or "bad request", anthropic=anthropic)
            return
        if path in retrieval.PATHS:  # embeddings and rerank: gateway/retrieval.py
            await retrieval.serve(self.chains, path, headers, data, receive, send, probe=is_probe(headers))
            return
        await self.chains.serve(path, headers, body, data, receive, send, anthropic)


def models_list(routes: Routes) -> list[JSONObject]:
    """What ``/v1/models`` lists: each name served, with the context window a tier serves
    (``context_length``) and, for an alias, the tier it stands for (``alias_of``)."""
    out: list[JSONObject] = []
    alias_of = dict(routes.aliases)
    for name in routes.model_ids:
        entry: JSONObject = {"id": name, "object": "model", "created": 0, "owned_by": "mlx-stack"}
        target = alias_of.get(name) if name not in routes.tiers else None
        if target is not None:
            entry["alias_of"] = target
        tier = routes.tiers.get(target or name)
        if tier is not None and tier.context_window is not None:
            entry["context_length"] = tier.context_window
        out.append(entry)
    return out
