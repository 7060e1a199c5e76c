"""Where the gateway hook finds the routing document, re-read when it changes."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from mlx_stack.core.litellm_routing import ROUTING_FILE, ROUTING_FILE_ENV, RoutingTable, parse_document
from mlx_stack.errors import MlxStackError

log = logging.getLogger("mlx_stack.gateway")


# The LiteLLM config the gateway was started with (set by the gateway command; see
# mlx_stack.gateway.reload): routing.json is written next to it.
GATEWAY_CONFIG_ENV = "MLX_STACK_GATEWAY_CONFIG"


def routing_file() -> Path:
    """``$MLX_STACK_ROUTING_FILE``; else ``routing.json`` next to the gateway's LiteLLM
    config; else ``generated/routing.json`` of the state home."""
    override = os.environ.get(ROUTING_FILE_ENV)
    if override:
        return Path(override)
    config = os.environ.get(GATEWAY_CONFIG_ENV)
    if config:
        return Path(config).parent / ROUTING_FILE
    from mlx_stack.paths import paths

    return paths().generated_dir / ROUTING_FILE


class TableSource:
    """The current :class:`RoutingTable`; the file's mtime is checked at most every ``recheck`` s,
    so `mlx-stack config`/`setup` changes reach a running gateway without a restart."""

    def __init__(self, path: Path, *, recheck: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.path = path
        self.recheck = recheck
        self._clock = clock
        self._checked = float("-inf")
        self._mtime: int | None = None
        self._table: RoutingTable | None = None

    def get(self) -> RoutingTable | None:
        now = self._clock()
        if now - self._checked < self.recheck:
            return self._table
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return self._table  # keep the last good table if the file went away
        if mtime != self._mtime:
            try:
                self._table = parse_document(json.loads(self.path.read_text()), str(self.path))
                self._mtime = mtime
            except (OSError, ValueError, MlxStackError) as exc:
                log.error("mlx-stack: cannot read %s (%s); keeping the previous routing", self.path, exc)
        return self._table
