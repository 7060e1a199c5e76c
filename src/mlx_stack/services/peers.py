"""`mlx-stack peer add/list/remove` and the `gateway.*` settings (issue 26).

A peer is another stack's front door; its URL lives in stack.yaml's ``peers:``, its key
in the secret ``peer-NAME`` (0600, shown masked). Changes are made under the stack lock
and, when the front door runs, reach it through its routes file within half a second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from mlx_stack.core import peers as core
from mlx_stack.core.config_schema import shown
from mlx_stack.errors import NotFoundError, UsageError
from mlx_stack.json_types import JSONObject
from mlx_stack.paths import Paths

GATEWAY_KEYS = ("gateway.host", "gateway.tls-cert", "gateway.tls-key", "gateway.prefer-peers")


@dataclass(frozen=True)
class PeerRow:
    name: str
    url: str
    key: str  # masked
    ca_file: str | None = None

    def as_dict(self) -> JSONObject:
        return {"name": self.name, "url": self.url, "key": self.key, "ca_file": self.ca_file}


@dataclass(frozen=True)
class PeerAdded:
    peer: PeerRow
    answered: bool  # its /v1/models answered with this key just now
    tiers: tuple[str, ...] = ()
    problem: str = ""  # why it did not answer (it is added anyway: it may be off now)

    def as_dict(self) -> JSONObject:
        return {**self.peer.as_dict(), "answered": self.answered, "tiers": list(self.tiers),
                "problem": self.problem}


@dataclass(frozen=True)
class PeerList:
    peers: tuple[PeerRow, ...]

    def as_dict(self) -> JSONObject:
        return {"peers": [p.as_dict() for p in self.peers]}


def read_key_file(path: Path) -> str:
    """The key from ``--key-file`` (a small regular file)."""
    from mlx_stack.system.fs import is_present, read_state_text

    if not is_present(path):
        raise NotFoundError(f"key file not found: {path}", hint="give the file holding the peer's key")
    text = read_state_text(path, hint="give a readable file holding only the peer's key")
    return text or ""


def _masked(p: Paths, name: str) -> str:
    from mlx_stack.system import secrets

    return secrets.mask(secrets.read_secret(p, core.secret_name(name))) or "(missing)"


def _check_ca(ca_file: str | None) -> str | None:
    if ca_file is None:
        return None
    path = Path(ca_file).expanduser().resolve()
    return _readable(path, f"the CA file {path}",
                     hint="give the PEM file of the CA (or the self-signed certificate) the peer's "
                          "certificate is checked against")


def _readable(path: Path, what: str, *, hint: str) -> str:
    """``path`` as text when it can be read; a one-line NotFoundError naming ``what`` if not."""
    try:
        path.read_bytes()
    except OSError as exc:
        raise NotFoundError(f"cannot read {what} ({exc.strerror or type(exc).__name__})", hint=hint) from None
    return str(path)


def _save(p: Paths, stack: object) -> None:
    from mlx_stack.core.stack import Stack
    from mlx_stack.services import gateway_config, stack_store
    from mlx_stack.services.service_control import litellm_port

    assert isinstance(stack, Stack)
    stack_store.save(p, stack)
    if p.routes_file.exists():  # a running front door follows within half a second
        gateway_config.write_gateway_config(p, stack, cloud_port=litellm_port(p))


def add(p: Paths, url: str, key: str, *, name: str | None = None, ca_file: str | None = None,
        check: bool = True) -> PeerAdded:
    """Add a peer: the URL checked, the key stored 0600, stack.yaml and the routes written;
    then (``check``) its ``/v1/models`` is asked once, to say whether it answers."""
    from mlx_stack.services import stack_store
    from mlx_stack.system import secrets
    from mlx_stack.system.locks import file_lock

    clean = core.parse_url(url)
    secret = core.parse_key(key)
    peer_name = name.strip().lower() if name is not None else core.name_from_url(clean)
    ca = _check_ca(ca_file)
    if ca is not None and not clean.startswith("https://"):
        raise UsageError("--ca-file is for an https peer",
                         hint="use https://HOST:PORT, or leave --ca-file out")
    with file_lock(p.lock_file, what="mlx-stack"):
        stack = stack_store.load(p)
        core.check_new(stack.peers, peer_name, clean)
        peer = core.Peer(peer_name, clean, ca)
        secrets.write_secret(p, peer.secret, secret)
        try:
            _save(p, replace(stack, peers=(*stack.peers, peer)))
        except BaseException:
            secrets.delete_secret(p, peer.secret)  # no half-written peer
            raise
    row = PeerRow(peer_name, clean, secrets.mask(secret), ca)
    if not check:
        return PeerAdded(row, False)
    answered, tiers, problem = probe(peer, secret)
    return PeerAdded(row, answered, tiers, problem)


def probe(peer: core.Peer, key: str,
          timeout: float = core.CHECK_TIMEOUT_S) -> tuple[bool, tuple[str, ...], str]:
    """Ask the peer's ``/v1/models`` once: (answered, its tiers, why not)."""
    from mlx_stack.system import probes

    headers = {"Authorization": f"Bearer {key}", core.HOP_HEADER: "1"}
    try:
        status, body = probes.fetch_url(peer.url, "/v1/models", headers=headers, timeout=timeout,
                                        ca_file=peer.ca_file)
    except OSError as exc:
        why = ("connection refused" if isinstance(exc, ConnectionRefusedError)
               else "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__)
        return False, (), why[:200]
    if status == 401:
        return False, (), "it refused the key (401)"
    if status != 200:
        return False, (), f"it answered HTTP {status}"
    try:
        models = core.read_models(json.loads(body))
    except ValueError:
        models = None
    if models is None:
        return False, (), "its /v1/models is not an mlx-stack model list"
    return True, tuple(models.tiers), ""


def list_peers(p: Paths) -> PeerList:
    from mlx_stack.services import stack_store

    stack = stack_store.load(p)
    return PeerList(tuple(PeerRow(x.name, x.url, _masked(p, x.name), x.ca_file) for x in stack.peers))


def remove(p: Paths, name: str) -> PeerRow:
    """Remove a peer from stack.yaml (and the routes), then its key."""
    from mlx_stack.services import stack_store
    from mlx_stack.system import secrets
    from mlx_stack.system.locks import file_lock

    with file_lock(p.lock_file, what="mlx-stack"):
        stack = stack_store.load(p)
        found = [x for x in stack.peers if x.name == name]
        if not found:
            raise NotFoundError(f"no peer named {shown(name)}",
                                hint="peers: " + (", ".join(x.name for x in stack.peers) or "none")
                                + " (`mlx-stack peer list`)")
        _save(p, replace(stack, peers=tuple(x for x in stack.peers if x.name != name)))
        row = PeerRow(name, found[0].url, _masked(p, name), found[0].ca_file)
        secrets.delete_secret(p, found[0].secret)
    return row


def is_gateway_key(key: str) -> bool:
    return key.startswith("gateway.")


def set_gateway(p: Paths, key: str, raw: str | None) -> str | bool | None:
    """`config set gateway.host|tls-cert|tls-key|prefer-peers` (``raw`` None: the default),
    kept in stack.yaml's ``gateway:``; host and TLS take effect at the front door's next
    start, prefer-peers through the routes file at once."""
    from mlx_stack.services import stack_store
    from mlx_stack.system.locks import file_lock

    if key not in GATEWAY_KEYS:
        raise NotFoundError(f"unknown config key {shown(key)}",
                            hint="gateway keys: " + ", ".join(GATEWAY_KEYS))
    field = key.removeprefix("gateway.")
    value: str | bool | None = None
    if raw is not None:
        value = _gateway_value(field, raw.strip())
    with file_lock(p.lock_file, what="mlx-stack"):
        stack = stack_store.load(p)
        gw = stack.gateway
        if field == "host":
            gw = replace(gw, host=str(value) if value is not None else "127.0.0.1")
        elif field == "tls-cert":
            gw = replace(gw, tls_cert=value if isinstance(value, str) else None)
        elif field == "tls-key":
            gw = replace(gw, tls_key=value if isinstance(value, str) else None)
        else:
            gw = replace(gw, prefer_peers=value is True)
        _save(p, replace(stack, gateway=gw))
    now: dict[str, str | bool | None] = {"host": gw.host, "tls-cert": gw.tls_cert, "tls-key": gw.tls_key,
                                         "prefer-peers": gw.prefer_peers}
    return now[field]


def _gateway_value(field: str, text: str) -> str | bool:
    if field == "prefer-peers":
        low = text.lower()
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0"):
            return False
        raise UsageError(f"invalid value {shown(text)} for gateway.prefer-peers: expected true or false")
    if field == "host":
        if not text or len(text) > 255 or not all(c.isalnum() or c in ".:-_" for c in text):
            raise UsageError(f"invalid value {shown(text)} for gateway.host: expected an address or a "
                             "host name",
                             hint="127.0.0.1 (this Mac only), 0.0.0.0 (every interface) or one address")
        return text
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    return _readable(path, f"{path} for gateway.{field}", hint="give a readable PEM file (certificate chain "
                                                               "for tls-cert, its private key for tls-key)")
