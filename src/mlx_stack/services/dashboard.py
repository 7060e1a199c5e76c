"""The dashboard's side in mlx-stack: the context file the front door reads, the JSON view
for `status --watch`, the page's URL for `open`.

``generated/dashboard.json`` (no secrets) holds what the front door cannot see from its
routes: the stack's home (for the pid files and the watchdog's state), the hardware
profile, the memory budget and each tier's planned memory. It is written with the routes
file; the front door re-reads it when it changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

from mlx_stack.core.stack import GATEWAY, Stack
from mlx_stack.paths import Paths

if TYPE_CHECKING:
    from mlx_stack.core.hardware import HardwareProfile
    from mlx_stack.json_types import JSON

MB = 1024 * 1024


class Budget(TypedDict):
    bytes: int
    planned_bytes: int


class Context(TypedDict, total=False):
    """``generated/dashboard.json``, as written (every key) and as read (any may be missing)."""

    schema: int
    home: str
    hardware: dict[str, JSON] | None
    budget: Budget | None
    planned_bytes: dict[str, int]


def _hardware(p: Paths) -> tuple[dict[str, JSON] | None, HardwareProfile | None]:
    """The profile for the page; detected once (on a Mac detection takes a while), then
    taken from the context file already written."""
    from mlx_stack.services import hardware

    try:
        known = json.loads(p.dashboard_context_file.read_text()).get("hardware")
        if isinstance(known, dict):
            return cast("dict[str, JSON]", known), None
    except (OSError, ValueError, AttributeError):
        pass
    try:
        hw = hardware.this_boot(p)
    except Exception:  # the page shows "-" rather than the front door not starting
        return None, None
    d = hw.as_dict()
    keep = ("label", "chip", "kind", "os", "memory_gb", "gpu_cores", "cpu_cores", "bandwidth_gbs",
            "gpu_limit_bytes")
    return {k: d.get(k) for k in keep}, hw


def context(p: Paths, stack: Stack) -> Context:
    from mlx_stack.services import serving_plan

    hw_dict, hw = _hardware(p)
    try:
        profs = serving_plan.profiles(p, stack, hw=hw)
    except Exception:  # a plan that cannot be made must not stop the front door
        profs = {}
    planned = {name: prof.planned_mb * MB for name, prof in profs.items()}
    budget: Budget | None = None
    if stack.memory_budget_mb is not None:
        budget = {"bytes": stack.memory_budget_mb * MB, "planned_bytes": sum(planned.values())}
    return {"schema": 1, "home": str(p.home), "hardware": hw_dict, "budget": budget, "planned_bytes": planned}


def write_context(p: Paths, stack: Stack) -> Path:
    from mlx_stack.system.fs import atomic_write

    path = p.dashboard_context_file
    atomic_write(path, json.dumps(context(p, stack), indent=1) + "\n")
    return path


def configured_stack(p: Paths) -> Stack:
    """The stack the dashboard shows; NotFoundError when none is configured yet."""
    from mlx_stack.errors import NotFoundError
    from mlx_stack.services import stack_store

    if not stack_store.exists(p):
        raise NotFoundError("no stack configured yet",
                            hint="run `mlx-stack setup` (or `mlx-stack setup --demo`)")
    return stack_store.load(p)


def page_url(stack: Stack) -> str:
    from mlx_stack.services.running import base_url

    return base_url(stack, GATEWAY) + "/"


def fetch_view(p: Paths, stack: Stack, timeout: float = 5.0) -> dict[str, Any] | None:
    """The running front door's JSON view (with the stack key), or None if it does not answer.
    Any: the view's shape is the front door's (``core.dashboard.VIEW_SCHEMA``), which the
    views read key by key."""
    from mlx_stack.services.running import base_url
    from mlx_stack.system import probes, secrets

    key = secrets.read_secret(p, secrets.GATEWAY_KEY)
    text = probes.fetch_text(base_url(stack, GATEWAY), "/api/dashboard", api_key=key, timeout=timeout)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Board:
    """The configured stack's dashboard, for `status --watch` and `open`: the page's URL
    and the front door's live view."""

    paths: Paths
    stack: Stack

    @property
    def url(self) -> str:
        return page_url(self.stack)

    def view(self, timeout: float = 5.0) -> dict[str, Any] | None:
        return fetch_view(self.paths, self.stack, timeout=timeout)


def board(p: Paths) -> Board:
    """The dashboard of the configured stack; NotFoundError when none is configured yet."""
    return Board(p, configured_stack(p))
