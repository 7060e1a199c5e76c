"""`status`'s probe requests, sent before the rest of the command has loaded.

A `status` spends ~0.1 s loading what it needs to look at the services (psutil, the
stack's types) and then waits ~0.07 s for their completions. So the requests of the last
look are kept in ``run/looks.json`` (never the key: it is read again from secrets/), and
the next `status` sends the same ones first thing. A look takes an early answer only for
the very request it would have made itself (``probes.Ahead``): a changed stack, key or
tier is looked at as before, and an early answer nobody takes is dropped.

Nothing is sent early unless every pid file is as it was at that look (size and CRC-32;
that look had checked each process was ours before asking it anything), was written
since this boot, and names a live process that leads its own group; and only to this
machine.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from contextlib import suppress
from typing import TYPE_CHECKING

from mlx_stack.errors import MlxStackError
from mlx_stack.system.fs import read_state_bytes
from mlx_stack.system.probes import LOOPBACK, Ahead, Asked, asked

if TYPE_CHECKING:
    from mlx_stack.paths import Paths
    from mlx_stack.system.host import OneScan

LOOKS_FILE = "looks.json"
SCHEMA = 1
MAX_BYTES = 64 * 1024  # a few requests (or one pid file); anything bigger is not ours
MAX_REQUESTS = 32


class Sent:
    """What :func:`send` saw and sent: the pid files (name -> size:crc32; None when one
    could not be read), the kept file's text, and the requests on their way."""

    def __init__(self, pid_files: dict[str, str] | None, kept: str | None = None) -> None:
        self.pid_files = pid_files
        self.kept = kept
        self.ahead = Ahead()


def _pid_files(p: Paths) -> tuple[dict[str, str], dict[str, tuple[int | None, float]]] | None:
    """Every pid file's fingerprint, and its pid and modification time; None if one cannot
    be read (then nothing is sent early, nor kept)."""
    prints: dict[str, str] = {}
    facts: dict[str, tuple[int | None, float]] = {}
    for path in p.pid_files():
        try:
            raw = read_state_bytes(path, hint="", max_bytes=MAX_BYTES)  # (a fifo never hangs it)
            mtime = path.stat().st_mtime
        except (MlxStackError, OSError):
            return None
        if raw is None:
            return None
        prints[path.name] = f"{len(raw)}:{zlib.crc32(raw):08x}"
        try:
            pid = json.loads(raw).get("pid")
        except (ValueError, AttributeError):
            pid = None
        facts[path.name] = (pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None,
                            mtime)
    return prints, facts


def _all_ours(facts: dict[str, tuple[int | None, float]]) -> bool:
    """Each pid file written since this boot, its process alive and leading its own group
    (as every service mlx-stack starts does)."""
    booted = time.time() - time.clock_gettime(time.CLOCK_MONOTONIC)  # no earlier than the boot
    for pid, mtime in facts.values():
        if pid is None or mtime < booted:
            return False
        try:
            os.kill(pid, 0)
            if os.getpgid(pid) != pid:
                return False
        except OSError:
            return False
    return True


def _on_this_machine(url: str) -> bool:
    from urllib.parse import urlsplit  # (loaded already: probes uses it)

    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and parts.hostname in LOOPBACK and parts.port is not None
    except ValueError:  # a bad port
        return False


def _request(item: object, key: str | None) -> Asked | None:
    """One kept request, checked field by field; None when anything is off."""
    if not isinstance(item, dict):
        return None
    url, model, keyed = item.get("url"), item.get("model"), item.get("keyed")
    timeout, headers, kind = item.get("timeout"), item.get("headers"), item.get("kind")
    if not (isinstance(url, str) and _on_this_machine(url) and isinstance(model, str)
            and isinstance(keyed, bool) and isinstance(timeout, int | float) and 0 < timeout <= 60
            and isinstance(headers, dict) and isinstance(kind, str)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())):
        return None
    if keyed and key is None:
        return None
    return asked(url, model, api_key=key if keyed else None, timeout=float(timeout),
                 headers=dict(headers), kind=kind)


def _gateway_key(p: Paths) -> str | None:
    from mlx_stack.system import secrets

    try:
        return secrets.read_secret(p, secrets.GATEWAY_KEY)
    except (MlxStackError, OSError):
        return None


def send(p: Paths) -> Sent:
    """Send the last look's requests when every pid file is as it was then (see above)."""
    found = _pid_files(p)
    sent = Sent(found[0] if found is not None else None)
    if found is None or not found[0]:
        return sent
    try:
        raw = read_state_bytes(p.run_dir / LOOKS_FILE, hint="", max_bytes=MAX_BYTES)
        if raw is None:
            return sent
        sent.kept = raw.decode("utf-8")
        doc = json.loads(sent.kept)
    except (MlxStackError, OSError, ValueError):  # (UnicodeDecodeError is a ValueError)
        return sent
    if not (isinstance(doc, dict) and doc.get("schema") == SCHEMA and doc.get("pid_files") == found[0]
            and isinstance(doc.get("requests"), list)) or not _all_ours(found[1]):
        return sent
    items: list[object] = doc["requests"][:MAX_REQUESTS]
    key = _gateway_key(p) if any(isinstance(i, dict) and i.get("keyed") is True for i in items) else None
    for item in items:
        request = _request(item, key)
        if request is not None:
            sent.ahead.send(request)
    return sent


def remember(p: Paths, sent: Sent, looked: OneScan) -> None:
    """Keep this look's answered requests for the next `status`, if no pid file changed
    while it looked (the file is written only when what it holds changes)."""
    found = _pid_files(p)
    if sent.pid_files is None or found is None or found[0] != sent.pid_files:
        return  # a service started or stopped meanwhile: the next look starts afresh
    key = _gateway_key(p) if any(a[2] is not None for a, _ in looked.asked) else None
    requests: list[dict[str, object]] = []
    for (url, model, api_key, timeout, headers, kind), ok in looked.asked:
        if not ok or not _on_this_machine(url) or (api_key is not None and api_key != key):
            continue
        item: dict[str, object] = {"url": url, "model": model, "keyed": api_key is not None,
                                   "timeout": timeout, "headers": dict(headers), "kind": kind}
        if item not in requests:
            requests.append(item)
    requests.sort(key=lambda r: (str(r["url"]), str(r["model"]), str(r["kind"])))  # not the answers' order
    text = json.dumps({"schema": SCHEMA, "pid_files": sent.pid_files, "requests": requests},
                      sort_keys=True)
    if text == sent.kept or (not requests and sent.kept is None) or not p.run_dir.is_dir():
        return
    with suppress(OSError):  # a read-only state folder: nothing is sent early
        from mlx_stack.system.fs import atomic_write

        atomic_write(p.run_dir / LOOKS_FILE, text)
