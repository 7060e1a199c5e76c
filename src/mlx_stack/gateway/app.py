"""The front door: a plain ASGI callable on the gateway port.

Per request: check the stack key; read the body as bytes and parse only what routing
needs; :func:`mlx_stack.core.front_door.plan` gives the upstreams to try; the first one
that answers before failing server-side gets to answer. Bodies go upstream as the
client sent them (re-encoded only when the model name must change) and come back as
bytes. See :mod:`mlx_stack.gateway.relay` for the per-attempt rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mlx_stack.core.agent_requests import has_earlier_turns, normalize_volatile, session_key
from mlx_stack.core.controls import escape_controls
from mlx_stack.core.front_door import (
    Plan,
    Routes,
    UnknownModel,
    clamp_output,
    is_near_a_limit,
    plan,
    shape_problem,
    too_long_message,
    unanswered_message,
)
from mlx_stack.core.metrics_text import cache_gauges, cache_stats, tier_gauges
from mlx_stack.core.routing import has_tools
from mlx_stack.core.stack import CLOUD
from mlx_stack.gateway import replies, retrieval
from mlx_stack.gateway.continuation import ChatStream, continue_on
from mlx_stack.gateway.dashboard import PAGES, VIEW_HEADERS, VIEW_ROUTE, Dashboard
from mlx_stack.gateway.limits import Connections, Full, Gate
from mlx_stack.gateway.metrics import Metrics
from mlx_stack.gateway.on_demand import OnDemand
from mlx_stack.gateway.relay import Answer, Failure, attempt, error_event, relay_stream
from mlx_stack.gateway.routes_file import RoutesFile
from mlx_stack.gateway.sessions import Request, Sessions
from mlx_stack.gateway.upstream import Pool

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
COUNT_TOKENS = "/v1/messages/count_tokens"
PROBE_HEADER = b"x-mlx-stack-probe"  # status/up/watchdog probes: not counted as traffic
MAX_BODY = 64 * 1024 * 1024
BODY_STALL_S = 30.0  # a request body that sends nothing for this long is answered 408
# Claude Code's volatile billing line is replaced by a constant (see core.agent_requests);
# MLX_STACK_GATEWAY_NORMALIZE=0 sends every body as the client wrote it.
NORMALIZE = os.environ.get("MLX_STACK_GATEWAY_NORMALIZE", "1") != "0"
CACHE_STATS_S = 0.5  # /metrics waits this long at most for a tier's own cache counts
RETRY_AFTER = b"1"  # seconds, on 429 (a tier's queue is full) and 503 (no upstream answered)
# Until the first byte: a tier that has not answered after this long (plus a share per
# prompt byte) must still answer its health check, or the next tier gets the request.
FIRST_BYTE_S = 2.0
PER_BODY_BYTE_S = 1e-4  # 100 KB of prompt: +10 s
AUTH_LOG_EVERY_S = 10.0


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
        self.gates: dict[str, Gate] = {}
        self.sessions = Sessions()

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
                if self.on_demand is not None:
                    self.on_demand.start()
                self.dashboard.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.dashboard.stop()
                if self.on_demand is not None:
                    await self.on_demand.stop()
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
            await replies.send_json(send, 200, {"object": "list", "data": models_list(self.routes.current)})
        elif path == "/metrics" and method == "GET":
            caches = await self._tier_caches()
            await replies.send_bytes(send, 200, self.metrics_text(caches).encode(),
                                     b"text/plain; version=0.0.4; charset=utf-8")
        elif path == VIEW_ROUTE and method == "GET":
            await replies.send_bytes(send, 200, await self.dashboard.view(), extra=VIEW_HEADERS)
        elif path in PAGES and method == "GET":
            await self._page(path, send)
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
        gauges = tier_gauges(states, {n: g.inflight for n, g in self.gates.items()},
                             {n: len(g.waiting) for n, g in self.gates.items()},
                             len(self.connections.open), self.connections.busy)
        if caches:
            gauges += cache_gauges(caches)
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
        body = await _read_body(receive)
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
        rewrite = False  # the body must be encoded again (not only for another model name)
        if problem is None and data is not None:
            problem = shape_problem(path, data)
        if problem is not None or data is None:
            await replies.error(send, 400, problem or "bad request", anthropic=anthropic)
            return
        if path in retrieval.PATHS:  # embeddings and rerank: gateway/retrieval.py
            await retrieval.serve(self, path, headers, data, receive, send,
                                  probe=any(name == PROBE_HEADER for name, _ in headers))
            return
        if NORMALIZE:
            fixed = normalize_volatile(data)
            if fixed is not None:
                data, rewrite = fixed, True
        lowered = clamp_output(data)
        if lowered is not None:
            data, rewrite = lowered, True
        routes = self.routes.current
        try:
            p = plan(data, routes)
            if is_near_a_limit(p.tokens, routes):
                counted = await self.routes.count_tokens(p.routed, data)
                if counted is not None:
                    p = plan(data, routes, tokens=counted)
        except UnknownModel as exc:
            await replies.error(send, 404, str(exc), anthropic=anthropic, code="model_not_found")
            return
        probe = any(name == PROBE_HEADER for name, _ in headers)
        metrics = None if probe else self.metrics
        if metrics is not None and p.reason.startswith("auto-"):
            metrics.routed_auto(p.routed, p.reason.removeprefix("auto-"))
        if not p.chain and path == COUNT_TOKENS and p.routed in routes.tiers:
            p = replace(p, chain=(p.routed,))  # counting a prompt too long to answer is fine
        if not p.chain:
            await replies.error(send, 400, too_long_message(p.tokens, routes, anthropic=anthropic),
                                anthropic=anthropic, code="context_length_exceeded")
            return
        answering = tuple(n for n in p.chain if n not in routes.tiers or routes.tiers[n].answers(path))
        if answering != p.chain:  # a cluster tier (mlx_lm.server): chat and completions only
            if not answering:
                await replies.error(send, 400, unanswered_message(path, p.chain, routes), anthropic=anthropic,
                                    code="unsupported_endpoint")
                return
            p = replace(p, chain=answering)  # falls on to the next tier that answers it
        session = ""  # followed only where `auto` chooses: a named tier or alias is fixed
        if p.reason.startswith("auto"):
            session = session_key(headers, data)
            p = self.sessions.keep(session, p, continued=has_earlier_turns(data))
        req = Request(path, body, data, anthropic, rewrite, session)
        await self.watched(receive, self._try_chain(req, p, send, metrics), metrics, p.routed)

    async def watched(self, receive: Receive, work: Coroutine[object, object, None], metrics: Metrics | None,
                      routed: str) -> None:
        """Run ``work`` (a request's chain of attempts) until done or until the client leaves:
        then this task is cancelled, which closes every upstream connection the work holds
        (the tier stops generating)."""
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.ensure_future(_until_disconnected(receive))

        def client_left(_: object) -> None:
            if not watcher.cancelled():
                task.cancel()

        watcher.add_done_callback(client_left)
        try:
            await work
        except asyncio.CancelledError:
            if not (watcher.done() and not watcher.cancelled()):
                raise  # the front door itself is stopping
            task.uncancel()
            if metrics is not None:
                metrics.bump(routed, "client_gone")
        finally:
            watcher.remove_done_callback(client_left)
            watcher.cancel()

    async def _try_chain(self, req: Request, p: Plan, send: Send, metrics: Metrics | None) -> None:
        pools = self.routes.pools
        od = self.on_demand
        tiers = self.routes.current.tiers
        lazy = {n for n in p.chain if od is not None and n in tiers and tiers[n].on_demand}
        # An on-demand tier stays in the chain while cooling: asleep, it is started instead.
        usable = [n for n in p.chain if n in pools and (not pools[n].cooling or n in lazy)]
        if not usable:  # everything is cooling down: try them anyway rather than refuse
            usable = [n for n in p.chain if n in pools]
        if lazy and od is not None:
            usable = od.fallback_order(usable, lazy)
        held: list[str] = []
        gate = self.gate(usable[0]) if usable else None
        if gate is not None:
            try:
                await gate.enter()
            except Full:
                if metrics is not None:
                    metrics.bump(usable[0], "rejected")
                await replies.error(send, 429, f"tier {usable[0]} has {gate.limit} requests under way and "
                                    f"{gate.queue} waiting: retry shortly", anthropic=req.anthropic,
                                    code="rate_limit_exceeded", extra=[(b"retry-after", RETRY_AFTER)])
                return
        try:
            await self._attempts(req, p, send, metrics, usable, lazy, held)
        finally:
            if gate is not None:
                gate.leave()
            for name in held:
                if od is not None:
                    od.release(name, probe=metrics is None)  # a probe is not use: no wake-up

    def gate(self, name: str) -> Gate:
        gate = self.gates.get(name)
        if gate is None:
            gate = self.gates[name] = Gate()
        return gate

    async def _attempts(self, req: Request, p: Plan, send: Send, metrics: Metrics | None,
                        usable: list[str], lazy: set[str], held: list[str]) -> None:
        pools = self.routes.pools
        path, body, data, anthropic = req.path, req.body, req.data, req.anthropic
        deadline = FIRST_BYTE_S + len(body) * PER_BODY_BYTE_S
        failures: list[str] = []
        refused: Failure | None = None  # a 5xx answer: this request's, not the tier's, fault
        attempted: set[str] = set()
        start = time.monotonic()
        cold: float | None = None
        for name in usable:
            pool = pools[name]
            if name in lazy and self.on_demand is not None:
                began = time.monotonic()
                starts = self.on_demand.tiers[name].cold_starts if name in self.on_demand.tiers else 0
                why = await self.on_demand.ensure(name, cooling=pool.cooling, wake=metrics is not None)
                if why is not None:
                    failures.append(f"{name}: {why}")
                    attempted.add(name)
                    if metrics is not None:
                        metrics.bump(name, "fallbacks_out")
                    continue
                held.append(name)
                if self.on_demand.tiers[name].cold_starts > starts:
                    cold = time.monotonic() - began
                pool = pools.get(name, pool)
            sent_model = pool.upstream.sent_model  # the tier name; a retrieval tier's model
            same = data.get("model") == sent_model and not req.rewrite
            out = body if same else _with_model(data, sent_model)
            result = await attempt(pool, path, out, deadline)
            if isinstance(result, Failure):
                failures.append(f"{name}: {result.why}")
                attempted.add(name)
                if result.tier_fault:
                    pool.failed(result.why)
                    if name in lazy and self.on_demand is not None:
                        self.on_demand.awake.discard(name)  # stopped from outside? the next request checks
                elif refused is None:
                    refused = result
                if metrics is not None:
                    metrics.bump(name, "server_errors")
                    metrics.bump(name, "fallbacks_out")
                continue
            if metrics is not None:
                metrics.bump(name, "requests")
                if name != p.routed:  # failed over, skipped (cooling down) or too long for it
                    metrics.bump(name, "fallbacks_in")
                    if p.routed not in attempted:
                        metrics.bump(p.routed, "fallbacks_out")
                    metrics.fallback(p.routed, name, _fallback_reason(p.routed, failures, pools))
                if 400 <= result.status < 500:
                    metrics.bump(name, "client_errors")
                metrics.observe(name, "ttft_seconds", time.monotonic() - start)
            route = "fallback" if name != p.routed else p.reason
            extra = [(b"x-mlx-stack-tier", name.encode()),
                     (b"x-mlx-stack-model", _header_text(pool.upstream.model)),
                     (b"x-mlx-stack-requested", _header_text(p.requested)),
                     (b"x-mlx-stack-route", route.encode())]
            if p.alias is not None:
                extra.append((b"x-mlx-stack-alias", _header_text(p.alias)))
            if failures:
                extra.append((b"x-mlx-stack-fallback-reason", _header_text("; ".join(failures))))
            if req.session and 200 <= result.status < 300:
                self.sessions.remember(req.session, name)
            if cold is not None:
                extra.append((b"x-mlx-stack-cold-start", f"{cold:.2f}".encode()))
            awake = self.on_demand.awake if self.on_demand is not None else set()
            await self._answer(result, extra, send, path, pool, start, metrics,
                               data=data, rest=[pools[n] for n in usable[usable.index(name) + 1:]
                                                if n != CLOUD and not pools[n].cooling
                                                and (n not in lazy or n in awake)], deadline=deadline)
            return
        if metrics is not None:
            metrics.fallback(p.routed, None, _fallback_reason(p.routed, failures, pools))
        if refused is not None and refused.answer is not None and len(failures) == len(attempted) \
                and all(not pools[n].cooling or n in lazy for n in attempted if n in pools):
            # No tier failed, each refused this request with a 5xx: it is the request. Said as
            # the client error it is, so SDKs do not retry it and no tier is cooled down.
            await replies.error(send, 400, "every tier failed on this request (" + refused.why + "): "
                                + _upstream_message(refused.answer.first), anthropic=anthropic,
                                code="invalid_request")
            return
        await replies.error(send, 503, "no upstream could answer: " + "; ".join(failures or ["none"]),
                            anthropic=anthropic, code="upstreams_unavailable", kind="server",
                            extra=[(b"retry-after", RETRY_AFTER)])

    async def _answer(self, result: Answer, extra: list[tuple[bytes, bytes]], send: Send,
                      path: str, pool: Pool, start: float, metrics: Metrics | None, *,
                      data: JSONObject, rest: list[Pool], deadline: float) -> None:
        name = pool.name
        head = replies.pass_headers(result.headers, extra, None if result.stream else len(result.first))
        if not result.stream:
            if metrics is not None:
                metrics.bump(name, "generated_tokens", _usage_tokens(result.first))
                metrics.observe(name, "duration_seconds", time.monotonic() - start)
            await send({"type": "http.response.start", "status": result.status, "headers": head})
            await send({"type": "http.response.body", "body": result.first})
            return
        try:
            await send({"type": "http.response.start", "status": result.status, "headers": head})
        except BaseException:
            if result.conn is not None:
                result.conn.abort()
            raise
        chat = ChatStream() if path == "/v1/chat/completions" and not has_tools(data) else None
        tokens, cut = await relay_stream(pool, result, send, path, chat)
        if metrics is not None:
            metrics.bump(name, "generated_tokens", tokens)
            if cut:
                metrics.bump(name, "stream_errors")
                metrics.bump(name, "server_errors")
        if not cut:
            if metrics is not None:
                metrics.observe(name, "duration_seconds", time.monotonic() - start)
            return
        pool.failed(cut)
        went_on = None
        if chat is not None and chat.continuable:
            chat.parse()
        if chat is not None and chat.continuable and chat.partial:
            went_on = await continue_on(rest, data, chat, tokens, send, deadline)
        if went_on is not None and metrics is not None:
            metrics.bump(went_on[0], "continuations")
            metrics.bump(went_on[0], "fallbacks_in")
            metrics.fallback(name, went_on[0], f"cut mid-answer ({cut}); continued on {went_on[0]}")
        if went_on is None or went_on[1]:
            why = f"the tier stopped mid-answer ({cut}); the answer is incomplete"
            await send({"type": "http.response.body", "body": error_event(path, why), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnected(receive: Receive) -> None:
    """Returns when the client has gone (its connection closed)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


TOO_LARGE = b"\0too large"
STALLED = b"\0stalled"


async def _read_body(receive: Receive) -> bytes | None:
    """The request body; None when the client left, TOO_LARGE or STALLED (sentinels)."""
    parts: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(BODY_STALL_S):  # a timer, no extra task
                message = await receive()
        except TimeoutError:
            return STALLED
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > MAX_BODY:
                return TOO_LARGE
            parts.append(chunk)
        if not message.get("more_body"):
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


# A lone surrogate (\ud800 without its pair) parses but cannot be encoded: looked for only
# when the body has a surrogate escape at all.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_body(body: bytes) -> tuple[JSONObject | None, str | None]:
    """The request body as a JSON object, or why it cannot be one (a 400)."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        return None, "the request body is nested too deeply"
    except ValueError as exc:  # UnicodeDecodeError included
        why = str(exc) if "is not valid JSON" in str(exc) else "the request body is not valid JSON"
        return None, why
    if not isinstance(data, dict):
        return None, "the request body must be a JSON object"
    if _SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            return None, "the request body holds a lone UTF-16 surrogate (invalid Unicode)"
        except RecursionError:
            return None, "the request body is nested too deeply"
    return cast("JSONObject", data), None


def _upstream_message(raw: bytes, limit: int = 300) -> str:
    """The message of an upstream's JSON error body, printable and short."""
    text = raw.decode("utf-8", "replace")
    with contextlib.suppress(ValueError, RecursionError):
        doc = json.loads(raw)
        err = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            text = err["message"]
        elif isinstance(err, str):
            text = err
        elif isinstance(doc, dict) and isinstance(doc.get("detail"), str):
            text = doc["detail"]
    text = escape_controls(text, one_line=True)
    return text[: limit - 3] + "..." if len(text) > limit else text


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


def _header_text(text: str, limit: int = 300) -> bytes:
    """``text`` as a header value: printable ASCII only, at most ``limit`` characters."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text[: limit * 2])
    return (clean[: limit - 3] + "..." if len(clean) > limit else clean).encode()


def _fallback_reason(routed: str, failures: list[str], pools: dict[str, Pool]) -> str:
    if failures:
        return "; ".join(failures)
    pool = pools.get(routed)
    if pool is not None and pool.cooling:
        return f"{routed} is cooling down after a failure"
    return f"{routed} was passed over (the prompt is too long for its window, or it is not available)"


def _with_model(data: JSONObject, model: str) -> bytes:
    return json.dumps({**data, "model": model}, separators=(",", ":")).encode()


def _usage_tokens(body: bytes) -> int:
    """Completion tokens named in a JSON answer's usage (OpenAI or Anthropic), else 0."""
    i = body.rfind(b'"usage"')
    if i < 0:
        return 0
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        usage = json.loads(body).get("usage") or {}
        return int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)
    return 0

