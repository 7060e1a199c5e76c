"""One real stack a test module starts and shares: its state folder, the front door's key
and address (``LiveStack``), started and stopped the same way everywhere (``running``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import openai
import pytest

from mlx_stack.core.stack import Stack
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_store
from mlx_stack.system import secrets


@dataclass
class LiveStack:
    home: Paths
    key: str
    url: str  # the front door, http://127.0.0.1:PORT

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0, timeout=120)


@contextmanager
def running(home: Paths, prepare: Callable[[], Stack], deadline_s: float) -> Iterator[LiveStack]:
    """With MLX_STACK_HOME set to ``home``: the stack ``prepare`` makes is saved and brought
    up (each service within ``deadline_s``); it is brought down at the end, whatever happens."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLX_STACK_HOME", str(home.home))
        mp.setenv("NO_COLOR", "1")
        try:
            stack = prepare()
            stack_store.save(home, stack)
            lifecycle.up(home, health_timeout=deadline_s)
            yield LiveStack(home, secrets.read_secret(home, secrets.GATEWAY_KEY) or "",
                            f"http://127.0.0.1:{stack.gateway.port}")
        finally:
            lifecycle.down(home, grace=5)
