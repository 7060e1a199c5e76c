"""The front door's routes: read from the routes file, re-read when it changes or on SIGHUP.

`setup --add/--remove` and `config set routing.*` rewrite the file (atomically); within
``RECHECK_S`` the front door serves the new routes. Upstreams whose URL did not change
keep their pooled client; the clients of removed upstreams close after a grace period,
so requests still running on them finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from mlx_stack.core.front_door import Routes, parse_routes
from mlx_stack.core.stack import CLOUD
from mlx_stack.gateway import tokens
from mlx_stack.gateway.upstream import Pool

if TYPE_CHECKING:
    from mlx_stack.json_types import JSONObject

log = logging.getLogger("mlx_stack.front_door")

RECHECK_S = 0.5
CLOSE_GRACE_S = 60.0
CLOUD_HEALTH = "/health/liveliness"  # LiteLLM's unauthenticated liveness route (sic)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ino


class RoutesFile:
    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self._key = key
        self._stamp = _stamp(path)
        self.current: Routes = parse_routes(json.loads(path.read_text()), str(path))
        self.pools: dict[str, Pool] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self.reloads = 0

    def _sync_pools(self) -> list[Pool]:
        """Pools for the current routes; returns the ones no longer used."""
        wanted = dict(self.current.tiers)
        if self.current.cloud is not None:
            wanted[CLOUD] = self.current.cloud
        old = self.pools
        new: dict[str, Pool] = {}
        for name, up in wanted.items():
            pool = old.get(name)
            if pool is not None and pool.url == up.url:
                pool.upstream = up
                new[name] = pool
            elif name == CLOUD:
                new[name] = Pool(up, health_route=CLOUD_HEALTH, auth=self._key)
            else:
                new[name] = Pool(up)
        self.pools = new
        kept = {id(p) for p in new.values()}
        return [p for p in old.values() if id(p) not in kept]

    def start(self) -> None:
        self._sync_pools()
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self._wake.set)
        self._task = loop.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for pool in self.pools.values():
            await pool.close()

    async def _watch(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RECHECK_S)
            self._wake.clear()
            stamp = _stamp(self.path)
            if stamp is None or stamp == self._stamp:
                continue
            try:
                routes = parse_routes(json.loads(self.path.read_text()), str(self.path))
            except (OSError, ValueError) as exc:
                log.error("cannot read %s (%s); keeping the current routes", self.path, exc)
                self._stamp = stamp
                continue
            self._stamp = stamp
            self.current = routes
            gone = self._sync_pools()
            self.reloads += 1
            log.warning("routes reloaded: %s%s", ", ".join(routes.tiers),
                        " + cloud" if routes.cloud else "")
            if gone:
                asyncio.get_running_loop().create_task(_close_later(gone))

    async def count_tokens(self, tier: str, body: JSONObject) -> int | None:
        """The prompt's tokens with ``tier``'s own tokenizer (off the loop), or None."""
        up = self.current.tiers.get(tier)
        if up is None or not up.tokenizer:
            return None
        return await asyncio.to_thread(tokens.count, up.tokenizer, body)


async def _close_later(pools: list[Pool]) -> None:
    await asyncio.sleep(CLOSE_GRACE_S)
    for pool in pools:
        await pool.close()
