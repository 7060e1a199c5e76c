"""Reload the gateway's model list in place when `setup` rewrites the LiteLLM config.

Loaded by the proxy from ``litellm_settings.callbacks`` (``mlx_stack.gateway.reload.reloader``).
Before each request it checks (at most every ``RECHECK_S``) the config file's
mtime; when it changed, it hands the new ``model_list`` to the running router
(``Router.set_model_list``, LiteLLM's own hot-reload path) and sets the fallback
chains from ``router_settings``. So `setup --add/--remove` changes the routes
without restarting the proxy: the endpoint never stops answering.

Best-effort: any failure is logged and the request goes on with the old routes
(setup then falls back to restarting the gateway).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

log = logging.getLogger("mlx_stack.gateway")

CONFIG_ENV = "MLX_STACK_GATEWAY_CONFIG"  # overrides the watched file (default: generated/litellm.yaml)
RECHECK_S = 0.25
ROUTER_KEYS = ("fallbacks", "context_window_fallbacks")


def config_file() -> Path:
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override)
    from mlx_stack.paths import paths

    return paths().generated_dir / "litellm.yaml"


class ConfigReloader(CustomLogger):
    def __init__(self, path: Path | None = None, *, recheck: float = RECHECK_S) -> None:
        super().__init__()
        self.path = path
        self.recheck = recheck
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self.reloads = 0
        # The proxy imports this module while it loads the config: that file is the baseline.
        try:
            self._mtime: int | None = self._file().stat().st_mtime_ns
        except OSError:
            self._mtime = None

    def _file(self) -> Path:
        if self.path is None:
            self.path = config_file()
        return self.path

    def maybe_reload(self, router: Any) -> bool:
        """Apply the config file to ``router`` if it changed since the last look."""
        now = time.monotonic()
        if now - self._checked < self.recheck:
            return False
        with self._lock:
            self._checked = now
            try:
                mtime = self._file().stat().st_mtime_ns
            except OSError:
                return False
            if mtime == self._mtime:
                return False
            self._mtime = mtime
            return self._apply(router)

    def _apply(self, router: Any) -> bool:
        import yaml

        try:
            config = yaml.safe_load(self._file().read_text()) or {}
            model_list = config.get("model_list")
            if router is None or not isinstance(model_list, list):
                return False
            router.set_model_list(model_list)
            settings = config.get("router_settings") or {}
            for key in ROUTER_KEYS:
                setattr(router, key, settings.get(key) or [])
            self.reloads += 1
            log.warning("mlx-stack: routes reloaded from %s (%d model groups)", self._file(), len(model_list))
            return True
        except Exception:  # never fail a request over a reload
            log.exception("mlx-stack: could not reload %s; keeping the current routes", self._file())
            return False

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any
    ) -> Any:
        try:
            from litellm.proxy import proxy_server

            self.maybe_reload(getattr(proxy_server, "llm_router", None))
        except Exception:
            log.exception("mlx-stack: reload check failed")
        return data


reloader = ConfigReloader()
