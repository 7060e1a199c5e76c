"""The gateway's config files on disk: the front door's routes and LiteLLM's config.

One home for both: where they live (:class:`~mlx_stack.paths.Paths`), how they are written
(atomically, never with a secret in them) and what they are rendered from
(:mod:`mlx_stack.core.gateway_config`, pure). The I/O the renderer needs is done here:
each tier's context window (stack.yaml's value, else the model's ``config.json``).

A running front door re-reads its routes file within half a second, so rewriting it is how
`setup --add/--remove`, `config set routing.*` and a LiteLLM restart reach the front door.
LiteLLM's port is the caller's to give (``service_control.litellm_port``): this module
knows files, not processes, and never imports ``service_control`` (which imports it).
"""

from __future__ import annotations

import json
from pathlib import Path

from mlx_stack.core import gateway_config as render
from mlx_stack.core.stack import Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.system.fs import atomic_write


def context_window(tier: Tier) -> int | None:
    """The tier's context window: stack.yaml's value, else the model's own config.json."""
    if tier.context_window is not None:
        return tier.context_window
    try:
        config = json.loads((Path(tier.path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") or {}):
        value = section.get("max_position_embeddings") if isinstance(section, dict) else None
        if isinstance(value, int) and value > 0:
            return value
    return None


def windows(stack: Stack) -> dict[str, int | None]:
    """Each tier's context window, by tier name."""
    return {t.name: context_window(t) for t in stack.tiers}


def write_routes(p: Paths, stack: Stack, *, cloud_port: int | None) -> Path:
    """Write the front door's routes file atomically; ``cloud_port``: LiteLLM's internal port
    while it runs, else None (no cloud upstream)."""
    doc = render.routes_for(stack, windows(stack), cloud_port)
    path = p.routes_file
    atomic_write(path, json.dumps(doc, indent=1) + "\n")
    return path


def write_gateway_config(p: Paths, stack: Stack, *, cloud_port: int | None) -> Path:
    """Write the front door's routes file atomically (no secrets in it): the tiers, the
    `auto` rules and, when LiteLLM runs for the cloud, its internal URL. A running front
    door re-reads it within half a second. Config only: the dashboard's context (hardware,
    planned memory) is ``services.dashboard.write_context``, for whoever needs it."""
    return write_routes(p, stack, cloud_port=cloud_port)


def write_litellm_config(p: Paths, stack: Stack) -> Path:
    """Write LiteLLM's config atomically: keys only as ``os.environ/`` references."""
    path = p.litellm_config_file
    atomic_write(path, render.litellm_text(stack))
    return path
