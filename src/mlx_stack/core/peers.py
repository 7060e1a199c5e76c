"""Peers: other mlx-stack front doors this one serves through (pure, no I/O).

A peer is another stack's front door (``http(s)://host:port``, its key stored as a
secret). The front door of every node serves the union of its own tiers and its peers':

- :func:`parse_url` / :func:`name_from_url`: what ``peer add`` accepts and names;
- :class:`PeerHealth`: what the last check of a peer's ``/v1/models`` said, and its
  cool-down after a failure (doubling from ``COOL_MIN_S`` up to ``COOL_MAX_S``);
- :func:`read_models`: a peer's ``/v1/models`` answer as its tiers and aliases;
- :func:`order_nodes`: which node answers first: the conversation's node when it can,
  else the fewest outstanding requests (ties: this node first, or the peers first with
  ``gateway.prefer-peers``);
- :class:`Sticky`: conversation -> node (least recently used forgotten first);
- the hop rule: a request forwarded to a peer carries :data:`HOP_HEADER`; a request that
  arrives with it is served by local tiers only (:func:`may_forward`), so two nodes that
  list each other never bounce a request between them.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mlx_stack.core.aliases import match as match_alias
from mlx_stack.errors import ConflictError, UsageError
from mlx_stack.json_types import JSON, as_list, as_object

HOP_HEADER = "x-mlx-stack-hop"
LOCAL = "local"  # the node name of this stack among its peers
PEER_SECRET_PREFIX = "peer-"  # a peer's key is the secret ``peer-NAME``
MAX_URL_CHARS = 2048
COOL_MIN_S = 2.0
COOL_MAX_S = 30.0
CHECK_EVERY_S = 5.0  # a peer that answers is checked again this often
CHECK_TIMEOUT_S = 2.0  # a check that takes longer is a failure
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
RESERVED = frozenset({LOCAL, "all", "auto", "cloud", "gateway", "litellm"})


@dataclass(frozen=True)
class Peer:
    """One entry of stack.yaml's ``peers:``: a name, its front door's URL, and optionally
    the CA file its TLS certificate is checked against (else the system's)."""

    name: str
    url: str  # scheme://host:port, no path
    ca_file: str | None = None

    @property
    def secret(self) -> str:
        return secret_name(self.name)

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")


def secret_name(peer: str) -> str:
    return PEER_SECRET_PREFIX + peer


MAX_KEY_CHARS = 512


def parse_key(raw: str) -> str:
    """A peer's key as given (stdin or a file): one line of printable ASCII, no spaces."""
    key = raw.strip()
    if not key:
        raise UsageError("no key given for the peer",
                         hint="pipe its key in (`mlx-stack peer add URL < key.txt`) or use --key-file FILE")
    if not all(" " < c < "\x7f" for c in key) or len(key) > MAX_KEY_CHARS:
        raise UsageError(f"the peer key must be one word of printable ASCII, at most {MAX_KEY_CHARS} "
                         "characters",
                         hint="give the peer's stack key (on that Mac: ~/.mlx-stack/secrets/gateway-key)")
    return key


def _bad_url(raw: str, problem: str, hint: str) -> UsageError:
    shown = "".join(c if c.isprintable() else "?" for c in raw[:80])
    return UsageError(f"invalid peer URL {shown!r}: {problem}", hint=hint)


_EXAMPLE = "e.g. `mlx-stack peer add http://mac-b.local:4000`"


def parse_url(raw: str) -> str:
    """The peer's front door as ``scheme://host:port`` (a trailing ``/`` or ``/v1`` is
    dropped: a client's base URL is accepted); UsageError naming what is wrong."""
    text = raw.strip()
    if not text or len(text) > MAX_URL_CHARS or not text.isprintable() or " " in text:
        raise _bad_url(raw, "expected a URL of printable characters without spaces", _EXAMPLE)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _bad_url(raw, "the scheme must be http or https", _EXAMPLE)
    if "@" in parts.netloc:
        raise _bad_url(raw, "credentials do not belong in the URL",
                       "give the peer's key on stdin or with --key-file; it is stored 0600")
    host = parts.hostname
    if not host:
        raise _bad_url(raw, "no host", _EXAMPLE)
    try:
        port = parts.port
    except ValueError:
        raise _bad_url(raw, "the port must be a number from 1 to 65535", _EXAMPLE) from None
    if port is None or port == 0:
        raise _bad_url(raw, "no port", "give the peer's front-door port, " + _EXAMPLE)
    if parts.query or parts.fragment or parts.path.rstrip("/") not in ("", "/v1"):
        raise _bad_url(raw, "expected only scheme, host and port", _EXAMPLE)
    shown_host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown_host}:{port}"


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


def name_from_url(url: str) -> str:
    """A peer name from the URL's host: ``http://Mac-B.local:4000`` -> ``mac-b``."""
    host = host_of(url).lower()
    first = host if re.fullmatch(r"[0-9.:]+", host) else host.split(".")[0]
    name = re.sub(r"[^a-z0-9-]+", "-", first).strip("-")
    if not name or not name[0].isalpha():
        name = "peer-" + name
    name = name[:32].rstrip("-")
    return name if name not in RESERVED else "peer-" + name


def name_problem(name: str) -> str | None:
    if not _NAME.match(name):
        return f"{name!r} is not a valid peer name (lowercase letters, digits, '-'; starts with a letter)"
    if name in RESERVED:
        return f"{name!r} is reserved"
    return None


def check_new(peers: Sequence[Peer], name: str, url: str) -> None:
    """Refuse a bad name (UsageError), a second peer with the same name or the same front
    door (ConflictError)."""
    problem = name_problem(name)
    if problem is not None:
        raise UsageError(f"invalid peer name: {problem}", hint="choose one with --name NAME")
    for p in peers:
        if p.name == name:
            raise ConflictError(f"a peer named {name!r} exists already ({p.url})",
                             hint="choose another with --name, or `mlx-stack peer remove " + name + "` first")
        if p.url == url:
            raise ConflictError(f"{url} is already the peer {p.name!r}",
                             hint=f"`mlx-stack peer remove {p.name}` first to add it again")


# --- what a peer serves ------------------------------------------------------------------


_no_tiers: dict[str, int | None] = {}
_no_aliases: dict[str, str] = {}


@dataclass(frozen=True)
class PeerModels:
    """What a peer's ``/v1/models`` listed: its tiers (name -> context window) and its
    aliases (pattern -> tier); ``auto`` and the cloud stay that node's own business."""

    tiers: Mapping[str, int | None] = field(default_factory=lambda: _no_tiers)
    aliases: Mapping[str, str] = field(default_factory=lambda: _no_aliases)


def read_models(doc: JSON) -> PeerModels | None:
    """A peer's ``/v1/models`` answer (parsed JSON); None when it is not one."""
    top = as_object(doc)
    data = as_list(top.get("data")) if top is not None else []
    if top is None or "data" not in top:
        return None
    tiers: dict[str, int | None] = {}
    aliases: dict[str, str] = {}
    for raw in data:
        entry = as_object(raw)
        if entry is None:
            return None
        name = entry.get("id")
        if not isinstance(name, str) or not name or len(name) > 256 or name in ("auto", "cloud"):
            continue
        if entry.get("peer") is not None:  # the peer's own peers: not ours to forward to
            continue
        target = entry.get("alias_of")
        if isinstance(target, str):
            aliases[name] = target
            continue
        window = entry.get("context_length")
        good = isinstance(window, int) and not isinstance(window, bool) and window > 0
        tiers[name] = window if good and isinstance(window, int) else None
    return PeerModels(tiers, {p: t for p, t in aliases.items() if t in tiers})


# --- health and cool-down ------------------------------------------------------------------


@dataclass
class PeerHealth:
    """One peer's state as its checks and requests saw it.

    ``unknown`` until the first check; ``up`` after a good one; ``cooling`` after a failure
    (a check, or a request that failed before its first byte) until ``until``, when the next
    check decides. Each failure in a row doubles the cool-down, up to ``COOL_MAX_S``.
    """

    name: str
    state: str = "unknown"  # unknown | up | cooling
    failures: int = 0
    until: float = 0.0  # end of the cool-down (monotonic s)
    checked: float = -1e9  # the last check (monotonic s)
    reason: str = ""
    models: PeerModels = field(default_factory=PeerModels)

    def usable(self) -> bool:
        return self.state == "up"

    def answered(self, now: float, models: PeerModels) -> None:
        self.state, self.failures, self.reason, self.until = "up", 0, "", 0.0
        self.checked = now
        self.models = models

    def failed(self, now: float, why: str, *, checked: bool = False) -> float:
        """Start (or lengthen) the cool-down; returns its length in seconds. A request that
        fails during a cool-down already running does not lengthen it."""
        if checked:
            self.checked = now
        if self.state == "cooling" and now < self.until and not checked:
            return self.until - now
        self.failures += 1
        cool = min(COOL_MAX_S, COOL_MIN_S * 2 ** (self.failures - 1))
        self.state, self.reason, self.until = "cooling", why, now + cool
        return cool

    def due(self, now: float) -> bool:
        """Time for the next check: every ``CHECK_EVERY_S`` while up, at the end of a cool-down."""
        if self.state == "cooling":
            return now >= self.until
        return now - self.checked >= CHECK_EVERY_S

    def serves(self, model: str) -> str | None:
        """The tier of this peer a request for ``model`` reaches (a tier name, or a name one
        of its aliases matches), else None."""
        if model in self.models.tiers:
            return model
        hit = match_alias(model, tuple(self.models.aliases.items()))
        return hit[1] if hit is not None else None


# --- choosing a node -----------------------------------------------------------------------


def order_nodes(outstanding: Mapping[str, int], *, prefer_peers: bool = False,
                sticky: str | None = None) -> list[str]:
    """The nodes able to serve a tier (:data:`LOCAL` for this one, else a peer's name, each
    with the requests it has under way from here), in the order to try them: the
    conversation's node first when it is among them, then by fewest outstanding; on a tie
    this node before its peers (the peers first with ``prefer_peers``), then by name."""
    def key(node: str) -> tuple[int, int, str]:
        local_rank = 0 if (node == LOCAL) != prefer_peers else 1
        return outstanding[node], local_rank, node

    ordered = sorted(outstanding, key=key)
    if sticky is not None and sticky in outstanding:
        ordered.remove(sticky)
        ordered.insert(0, sticky)
    return ordered


class Sticky:
    """Conversation -> the node that last answered it (at most ``kept``, least recently
    used forgotten first), so the next turn finds its prefix cache there."""

    def __init__(self, kept: int = 4096) -> None:
        self._nodes: OrderedDict[str, str] = OrderedDict()
        self.kept = kept

    def get(self, session: str) -> str | None:
        return self._nodes.get(session) if session else None

    def remember(self, session: str, node: str) -> None:
        if not session:
            return
        self._nodes[session] = node
        self._nodes.move_to_end(session)
        while len(self._nodes) > self.kept:
            self._nodes.popitem(last=False)

    def forget_node(self, node: str) -> None:
        for session in [s for s, n in self._nodes.items() if n == node]:
            del self._nodes[session]

    def __len__(self) -> int:
        return len(self._nodes)


def may_forward(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """False when the request came from a peer (it carries the hop marker): it is served by
    this node's own tiers only, never forwarded again."""
    marker = HOP_HEADER.encode()
    return not any(name == marker for name, _ in headers)


def union_models(local: list[dict[str, JSON]], peers: Mapping[str, PeerModels]) -> list[dict[str, JSON]]:
    """``/v1/models`` of a node: its own entries, then each model only peers serve, with
    ``peer`` naming the first peer that serves it (a peer reading this list skips them)."""
    out = list(local)
    seen = {str(e.get("id")) for e in local}
    for name in sorted(peers):
        models = peers[name]
        for tier, window in models.tiers.items():
            if tier in seen:
                continue
            seen.add(tier)
            entry: dict[str, JSON] = {"id": tier, "object": "model", "created": 0, "owned_by": "mlx-stack",
                                      "peer": name}
            if window is not None:
                entry["context_length"] = window
            out.append(entry)
        for pattern, tier in models.aliases.items():
            if pattern in seen:
                continue
            seen.add(pattern)
            out.append({"id": pattern, "object": "model", "created": 0, "owned_by": "mlx-stack",
                        "alias_of": tier, "peer": name})
    return out
