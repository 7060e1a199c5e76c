"""The data path of a proxied request: its plan, and the chain of attempts that answers it.

:class:`Chains` holds what every request shares (routes, metrics, the on-demand tiers,
the per-tier gates, the conversations' tiers) and turns a parsed :class:`Request` into a
:class:`~mlx_stack.core.front_door.Plan`. :class:`AttemptChain` is one request's walk
down its candidates: the gate of the first, an on-demand tier started (or skipped) on the
way, each attempt and its fallback, the metrics, the ``x-mlx-stack-*`` headers, the answer
copied by the relay, and a chat stream cut mid-answer continued on the next candidate
that runs. A candidate is a name and the pool that reaches it (its base address and
headers): another kind of upstream joins the chain as another :class:`Candidate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from mlx_stack.core.agent_requests import has_earlier_turns, normalize_volatile, session_key
from mlx_stack.core.controls import escape_controls
from mlx_stack.core.front_door import (
    Plan,
    UnknownModel,
    clamp_output,
    is_near_a_limit,
    plan,
    too_long_message,
    unanswered_message,
)
from mlx_stack.core.peers import LOCAL, may_forward, order_nodes
from mlx_stack.core.stack import CLOUD
from mlx_stack.gateway import replies
from mlx_stack.gateway.attempt import Answer, Failure, attempt, error_event
from mlx_stack.gateway.continuation import ChatStream, Translator, begin
from mlx_stack.gateway.limits import Full, Gate
from mlx_stack.gateway.relay import Copied, Relay, send_whole
from mlx_stack.gateway.request import Request, is_probe
from mlx_stack.gateway.sessions import Sessions
from mlx_stack.json_types import as_object, to_int

if TYPE_CHECKING:
    from mlx_stack.gateway.asgi import Receive, Send
    from mlx_stack.gateway.metrics import Metrics
    from mlx_stack.gateway.on_demand import OnDemand
    from mlx_stack.gateway.peers import Peers
    from mlx_stack.gateway.routes_file import RoutesFile
    from mlx_stack.gateway.upstream import Pool
    from mlx_stack.json_types import JSONObject

COUNT_TOKENS = "/v1/messages/count_tokens"
# Claude Code's volatile billing line is replaced by a constant (see core.agent_requests);
# MLX_STACK_GATEWAY_NORMALIZE=0 sends every body as the client wrote it.
NORMALIZE = os.environ.get("MLX_STACK_GATEWAY_NORMALIZE", "1") != "0"
RETRY_AFTER = b"1"  # seconds, on 429 (a tier's queue is full) and 503 (no upstream answered)
# Until the first byte: a tier that has not answered after this long (plus a share per
# prompt byte) must still answer its health check, or the next tier gets the request.
FIRST_BYTE_S = 2.0
PER_BODY_BYTE_S = 1e-4  # 100 KB of prompt: +10 s

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Candidate:
    """One upstream a request may go to: its name (a tier, the cloud) and the pool that
    reaches it (base address and headers). ``on_demand``: a tier started on first use.
    A peer's tier (issue 26) is named ``TIER@PEER``; ``sent`` is the model name the peer
    gets, ``node`` the peer (``core.peers.LOCAL`` for this node's own upstreams)."""

    name: str
    pool: Pool
    on_demand: bool = False
    sent: str | None = None
    node: str = LOCAL
    tier: str | None = None  # the tier it serves (the name without @PEER)


class Chains:
    """What every proxied request of one front door shares."""

    def __init__(self, routes: RoutesFile, metrics: Metrics, on_demand: OnDemand | None,
                 sessions: Sessions | None = None, peers: Peers | None = None) -> None:
        self.routes = routes
        self.metrics = metrics
        self.on_demand = on_demand
        self.sessions = sessions or Sessions()
        self.gates: dict[str, Gate] = {}
        self.peers = peers  # other stacks' front doors (issue 26)
        self.outstanding: dict[str, int] = {}  # requests under way per candidate name

    def gate(self, name: str) -> Gate:
        gate = self.gates.get(name)
        if gate is None:
            gate = self.gates[name] = Gate()
        return gate

    async def serve(self, path: str, headers: Headers, body: bytes, data: JSONObject,
                    receive: Receive, send: Send, anthropic: bool) -> None:
        """A chat-side request whose body parsed and passed the shape checks: planned, then
        answered by its chain."""
        rewrite = False  # the body must be encoded again (not only for another model name)
        if NORMALIZE:
            fixed = normalize_volatile(data)
            if fixed is not None:
                data, rewrite = fixed, True
        lowered = clamp_output(data)
        if lowered is not None:
            data, rewrite = lowered, True
        routes = self.routes.current
        peers = self.peers if self.peers is not None and self.peers.links and may_forward(headers) else None
        probe = is_probe(headers)
        if peers is not None and (only := peers.only_there(data.get("model"), routes)) is not None:
            # A model only peers serve (a tier of theirs, or a name their aliases match).
            req = Request(path, body, data, anthropic, rewrite, session_key(headers, data), probe)
            await self.run(req, only, receive, send, nodes=True, follow=has_earlier_turns(data))
            return
        try:
            p = plan(data, routes)
            if is_near_a_limit(p.tokens, routes):
                counted = await self.routes.count_tokens(p.routed, data)
                if counted is not None:
                    p = plan(data, routes, tokens=counted)
        except UnknownModel as exc:
            await replies.error(send, 404, str(exc), anthropic=anthropic, code="model_not_found")
            return
        if not probe and p.reason.startswith("auto-"):
            self.metrics.routed_auto(p.routed, p.reason.removeprefix("auto-"))
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
        elif peers is not None:  # which node a conversation is on is followed for every name
            session = session_key(headers, data)
        req = Request(path, body, data, anthropic, rewrite, session, probe)
        await self.run(req, p, receive, send, nodes=peers is not None, follow=has_earlier_turns(data))

    async def run(self, req: Request, p: Plan, receive: Receive, send: Send, *, nodes: bool = False,
                  follow: bool = False) -> None:
        """Answer ``req`` along ``p``'s chain, until done or until the client leaves;
        ``nodes``: the peers serving a tier of the chain are candidates too, the node that
        answered the conversation's last turn first when ``follow`` (a conversation known
        only by its opening is not followed on its first turn: another may open alike)."""
        follows = follow or not req.session.startswith("o:")
        candidates = self.with_peers(p, req.session if follows else "") if nodes else []
        chain = AttemptChain(self, req, p, candidates)
        await watched(receive, chain.run(send), chain.metrics, p.routed)

    def with_peers(self, p: Plan, session: str) -> list[Candidate]:
        """``p``'s candidates with the peers that serve each tier beside it: per tier, the
        nodes by fewest requests under way from here (the conversation's node first; on a tie
        this node, unless gateway.prefer-peers)."""
        peers = self.peers
        local = {c.name: c for c in self.candidates(p)}
        if peers is None:
            return list(local.values())
        sticky = peers.sticky.get(session)
        out: list[Candidate] = []
        order = list(local)  # the local order (sleeping on-demand tiers after running ones)
        for i, tier in enumerate(p.chain or (p.requested,)):
            if tier not in order:  # cooling here: a peer may still serve it, at its place
                order.insert(min(i, len(order) - (CLOUD in order)), tier)
        for tier in order:
            there = {link.name: (link, sent) for link, sent in peers.serving(tier)} if tier != CLOUD else {}
            nodes = {name: self.outstanding.get(f"{sent}@{name}", 0) for name, (_, sent) in there.items()}
            if tier in local:
                nodes[LOCAL] = self.outstanding.get(tier, 0)
            for node in order_nodes(nodes, prefer_peers=peers.prefer_peers, sticky=sticky):
                if node == LOCAL:
                    out.append(local[tier])
                else:
                    link, sent = there[node]
                    out.append(Candidate(f"{sent}@{node}", link, sent=sent, node=node, tier=sent))
        return out

    def candidates(self, p: Plan) -> list[Candidate]:
        """``p``'s chain as candidates: the cooling ones left out (an on-demand tier stays:
        asleep, it is started instead), the sleeping on-demand ones after those that run."""
        pools = self.routes.pools
        od = self.on_demand
        tiers = self.routes.current.tiers
        lazy = {n for n in p.chain if od is not None and n in tiers and tiers[n].on_demand}
        usable = [n for n in p.chain if n in pools and (not pools[n].cooling or n in lazy)]
        if not usable:  # everything is cooling down: try them anyway rather than refuse
            usable = [n for n in p.chain if n in pools]
        if lazy and od is not None:
            usable = od.fallback_order(usable, lazy)
        return [Candidate(n, pools[n], n in lazy) for n in usable]


async def watched(receive: Receive, work: Coroutine[object, object, None], metrics: Metrics | None,
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


async def _until_disconnected(receive: Receive) -> None:
    """Returns when the client has gone (its connection closed)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


@dataclass
class AttemptChain:
    """One request's walk down its candidates (see the module's doc)."""

    shared: Chains
    req: Request
    plan: Plan
    candidates: list[Candidate] = field(default_factory=list[Candidate])
    failures: list[str] = field(default_factory=list[str])  # "tier: why", in order
    refused: Failure | None = None  # the first 5xx answer: this request's fault, not the tier's
    attempted: set[str] = field(default_factory=set[str])
    held: list[str] = field(default_factory=list[str])  # on-demand tiers this request keeps awake
    cold: float | None = None  # seconds an on-demand start took, when this request waited for one
    start: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if not self.candidates:
            self.candidates = self.shared.candidates(self.plan)

    @property
    def metrics(self) -> Metrics | None:
        """None for a probe: not counted as traffic."""
        return None if self.req.probe else self.shared.metrics

    @property
    def deadline(self) -> float:
        return FIRST_BYTE_S + self.req.size * PER_BODY_BYTE_S

    async def run(self, send: Send) -> None:
        """Through the first candidate's gate (429 when its queue is full), then the chain."""
        first = self.candidates[0].name if self.candidates else None
        gate = self.shared.gate(first) if first is not None else None
        if gate is not None and first is not None:
            try:
                await gate.enter()
            except Full:
                if self.metrics is not None:
                    self.metrics.bump(first, "rejected")
                await replies.error(send, 429, f"tier {first} has {gate.limit} requests under way and "
                                    f"{gate.queue} waiting: retry shortly", anthropic=self.req.anthropic,
                                    code="rate_limit_exceeded", extra=[(b"retry-after", RETRY_AFTER)])
                return
        od = self.shared.on_demand
        try:
            await self._walk(send)
        finally:
            if gate is not None:
                gate.leave()
            for name in self.held:
                if od is not None:
                    od.release(name, probe=self.req.probe)  # a probe is not use: no wake-up

    async def _walk(self, send: Send) -> None:
        outstanding = self.shared.outstanding
        for i, c in enumerate(self.candidates):
            pool = await self._ready(c)
            if pool is None:
                continue
            outstanding[c.name] = outstanding.get(c.name, 0) + 1
            try:
                body = self.req.body_for(c.sent or pool.upstream.sent_model)
                result = await attempt(pool, self.req.path, body, self.deadline)
                if isinstance(result, Failure):
                    self._failed(c, pool, result)
                    continue
                self._answered(c, result)
                if self.shared.peers is not None:  # the conversation's node (on a 2xx)
                    self.shared.peers.answered(c.node, self.req.session if 200 <= result.status < 300 else "")
                await self._answer(pool, result, self._headers(c, pool, result), send,
                                   rest=self._continuation_candidates(i))
            finally:
                outstanding[c.name] -= 1
            return
        await self._give_up(send)

    async def _ready(self, c: Candidate) -> Pool | None:
        """The pool to try ``c`` on; for an on-demand tier, once it runs (None: it cannot
        start, and why is among the failures)."""
        od = self.shared.on_demand
        if not c.on_demand or od is None:
            return self.shared.routes.pools.get(c.name, c.pool)  # the routes may have been re-read
        began = time.monotonic()
        starts = od.tiers[c.name].cold_starts if c.name in od.tiers else 0
        why = await od.ensure(c.name, cooling=c.pool.cooling, wake=not self.req.probe)
        if why is not None:
            self.failures.append(f"{c.name}: {why}")
            self.attempted.add(c.name)
            if self.metrics is not None:
                self.metrics.bump(c.name, "fallbacks_out")
            return None
        self.held.append(c.name)
        if od.tiers[c.name].cold_starts > starts:
            self.cold = time.monotonic() - began
        return self.shared.routes.pools.get(c.name, c.pool)  # the routes may have been re-read

    def _failed(self, c: Candidate, pool: Pool, result: Failure) -> None:
        self.failures.append(f"{c.name}: {result.why}")
        self.attempted.add(c.name)
        if result.tier_fault:
            pool.failed(result.why)
            od = self.shared.on_demand
            if c.on_demand and od is not None:
                od.awake.discard(c.name)  # stopped from outside? the next request checks
        elif self.refused is None:
            self.refused = result
        if self.metrics is not None:
            self.metrics.bump(c.name, "server_errors")
            self.metrics.bump(c.name, "fallbacks_out")

    def _answered(self, c: Candidate, result: Answer) -> None:
        metrics, p, name = self.metrics, self.plan, c.name
        if metrics is None:
            return
        metrics.bump(name, "requests")
        if (c.tier or name) != p.routed:  # failed over, skipped (cooling down) or too long for it
            metrics.bump(name, "fallbacks_in")
            if p.routed not in self.attempted:
                metrics.bump(p.routed, "fallbacks_out")
            metrics.fallback(p.routed, name, self._fallback_reason())
        if 400 <= result.status < 500:
            metrics.bump(name, "client_errors")
        metrics.observe(name, "ttft_seconds", time.monotonic() - self.start)

    def _headers(self, c: Candidate, pool: Pool, result: Answer) -> Headers:
        p, name = self.plan, c.name
        if c.node != LOCAL:  # a peer's answer: its own tier and model headers pass through
            route = "peer" if c.tier == p.routed or c.tier == p.requested else "fallback"
            extra = [(b"x-mlx-stack-node", header_text(c.node)), (b"x-mlx-stack-route", route.encode())]
            result.headers = [(k, v) for k, v in result.headers
                              if k.lower() not in (b"x-mlx-stack-route", b"x-mlx-stack-node")]
            if self.failures:
                extra.append((b"x-mlx-stack-fallback-reason", header_text("; ".join(self.failures))))
            return extra
        route = "fallback" if name != p.routed else p.reason
        extra = [(b"x-mlx-stack-tier", name.encode()),
                 (b"x-mlx-stack-model", header_text(pool.upstream.model)),
                 (b"x-mlx-stack-requested", header_text(p.requested)),
                 (b"x-mlx-stack-route", route.encode())]
        if p.alias is not None:
            extra.append((b"x-mlx-stack-alias", header_text(p.alias)))
        if self.failures:
            extra.append((b"x-mlx-stack-fallback-reason", header_text("; ".join(self.failures))))
        if self.req.session and 200 <= result.status < 300:
            self.shared.sessions.remember(self.req.session, name)
        if self.cold is not None:
            extra.append((b"x-mlx-stack-cold-start", f"{self.cold:.2f}".encode()))
        return extra

    def _continuation_candidates(self, i: int) -> list[Pool]:
        """Who may take the rest of a stream cut on candidate ``i``: the local candidates
        after it that run (not cooling, not asleep); never the cloud."""
        pools = self.shared.routes.pools
        od = self.shared.on_demand
        awake = od.awake if od is not None else set[str]()
        return [pools[c.name] for c in self.candidates[i + 1:]
                if c.name != CLOUD and c.name in pools and not pools[c.name].cooling
                and (not c.on_demand or c.name in awake)]

    async def _answer(self, pool: Pool, result: Answer, extra: Headers, send: Send, *,
                      rest: list[Pool]) -> None:
        name, metrics, path = pool.name, self.metrics, self.req.path
        head = replies.pass_headers(result.headers, extra, None if result.stream else len(result.first))
        if not result.stream:
            if metrics is not None:
                metrics.bump(name, "generated_tokens", usage_tokens(result.first))
                metrics.observe(name, "duration_seconds", time.monotonic() - self.start)
            await send({"type": "http.response.start", "status": result.status, "headers": head})
            await send_whole(send, result.first)
            return
        conn = result.conn
        assert conn is not None
        try:
            await send({"type": "http.response.start", "status": result.status, "headers": head})
        except BaseException:
            conn.abort()
            raise
        chat = ChatStream() if self.req.continuable else None
        copied = await Relay(pool, conn, tap=chat.feed if chat is not None else None).run(result.first, send)
        if metrics is not None:
            metrics.bump(name, "generated_tokens", copied.tokens)
            if copied.cut:
                metrics.bump(name, "stream_errors")
                metrics.bump(name, "server_errors")
        if copied.cut is None:
            if metrics is not None:
                metrics.observe(name, "duration_seconds", time.monotonic() - self.start)
            if not copied.gone:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        pool.failed(copied.cut)
        rest_copied: Copied | None = None  # None: not continued
        if chat is not None and chat.continuable:
            chat.parse()
        if chat is not None and chat.continuable and chat.partial:
            rest_copied = await self._continue(name, copied, chat, rest, send)
        if rest_copied is not None and rest_copied.gone:
            return
        if rest_copied is None or rest_copied.cut is not None:
            why = f"the tier stopped mid-answer ({copied.cut}); the answer is incomplete"
            await send({"type": "http.response.body", "body": error_event(path, why), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _continue(self, name: str, copied: Copied, chat: ChatStream, rest: list[Pool],
                        send: Send) -> Copied | None:
        """The rest of a chat stream cut on ``name``, on the first of ``rest`` that takes it
        (None: none could start). Counted as it starts: a client that leaves as soon as it has
        the last chunk (the OpenAI SDK closes on ``[DONE]``) must not make it uncounted."""
        found = await begin(rest, self.req.data, chat, copied.tokens, self.deadline)
        if found is None:
            return None
        pool, result = found
        metrics = self.metrics
        if metrics is not None:
            metrics.bump(pool.name, "continuations")
            metrics.bump(pool.name, "fallbacks_in")
            metrics.fallback(name, pool.name, f"cut mid-answer ({copied.cut}); continued on {pool.name}")
        assert result.conn is not None
        translate = Translator(chat.meta)
        return await Relay(pool, result.conn, transform=translate.feed).run(result.first, send)

    def _fallback_reason(self) -> str:
        if self.failures:
            return "; ".join(self.failures)
        routed = self.plan.routed
        pool = self.shared.routes.pools.get(routed)
        if pool is not None and pool.cooling:
            return f"{routed} is cooling down after a failure"
        return f"{routed} was passed over (the prompt is too long for its window, or it is not available)"

    async def _give_up(self, send: Send) -> None:
        """No candidate answered: the request's own error when each refused it with a 5xx,
        else 503."""
        pools = self.shared.routes.pools
        lazy = {c.name for c in self.candidates if c.on_demand}
        if self.metrics is not None:
            self.metrics.fallback(self.plan.routed, None, self._fallback_reason())
        refused = self.refused
        if refused is not None and refused.answer is not None and len(self.failures) == len(self.attempted) \
                and all(not pools[n].cooling or n in lazy for n in self.attempted if n in pools):
            # No tier failed, each refused this request with a 5xx: it is the request. Said as
            # the client error it is, so SDKs do not retry it and no tier is cooled down.
            await replies.error(send, 400, "every tier failed on this request (" + refused.why + "): "
                                + upstream_message(refused.answer.first), anthropic=self.req.anthropic,
                                code="invalid_request")
            return
        await replies.error(send, 503, "no upstream could answer: " + "; ".join(self.failures or ["none"]),
                            anthropic=self.req.anthropic, code="upstreams_unavailable", kind="server",
                            extra=[(b"retry-after", RETRY_AFTER)])


def header_text(text: str, limit: int = 300) -> bytes:
    """``text`` as a header value: printable ASCII only, at most ``limit`` characters."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text[: limit * 2])
    return (clean[: limit - 3] + "..." if len(clean) > limit else clean).encode()


def upstream_message(raw: bytes, limit: int = 300) -> str:
    """The message of an upstream's JSON error body, printable and short."""
    text = raw.decode("utf-8", "replace")
    with contextlib.suppress(ValueError, RecursionError):
        doc = as_object(json.loads(raw)) or {}
        err, detail = doc.get("error"), doc.get("detail")
        message = (as_object(err) or {}).get("message")
        if isinstance(message, str):
            text = message
        elif isinstance(err, str):
            text = err
        elif isinstance(detail, str):
            text = detail
    text = escape_controls(text, one_line=True)
    return text[: limit - 3] + "..." if len(text) > limit else text


def usage_tokens(body: bytes) -> int:
    """Completion tokens named in a JSON answer's usage (OpenAI or Anthropic), else 0."""
    i = body.rfind(b'"usage"')
    if i < 0:
        return 0
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        usage = as_object((as_object(json.loads(body)) or {}).get("usage")) or {}
        return to_int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)
    return 0
