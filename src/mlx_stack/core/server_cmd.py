"""Command lines of the stack's processes, rendered from the stack (pure, no I/O).

Each service is a :class:`Command`: argv, the extra environment, and which of
those environment variables are secrets (masked by :func:`render_dry_run`).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mlx_stack.core.cluster import launch_argv
from mlx_stack.core.gateway_config import CLOUD_KEY_ENV, MASTER_KEY_ENV
from mlx_stack.core.memory_plan import server_flags
from mlx_stack.core.stack import EMBEDDING, GATEWAY, LITELLM, Stack, Tier, hub_cache_of

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class Command:
    service: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict[str, str])
    secret_env: frozenset[str] = frozenset()
    port: int = 0


def tier_command(tier: Tier, bin_dir: Path, ssd_dir: Path | None = None) -> Command:
    """vllm-mlx for one tier: local path, 127.0.0.1, served under the tier's name;
    ``ssd_dir``: its on-disk prefix cache folder (used when its profile caps one)."""
    if tier.retrieval:
        return retrieval_command(tier, bin_dir)
    argv = [
        str(bin_dir / "vllm-mlx"), "serve", tier.path,
        "--host", LOCALHOST,
        "--port", str(tier.port),
        "--served-model-name", tier.name,
        "--continuous-batching",
    ]
    # The serving profile's caps (core.memory_plan); a stack.yaml from before them keeps
    # vllm-mlx's own defaults.
    argv += (server_flags(tier.serving, str(ssd_dir) if ssd_dir else None) if tier.serving is not None
             else ["--use-paged-cache"])
    if tier.tool_call_parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", tier.tool_call_parser]
    if tier.reasoning_parser:
        argv += ["--reasoning-parser", tier.reasoning_parser]
    argv += list(tier.extra_args)
    # Never reach the hub from `up`: the model is a local directory.
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if ssd_dir is not None:
        # vllm-mlx saves its in-memory prefix cache at shutdown and loads it at start under
        # ~/.cache/vllm-mlx/prefix_cache/<model path>: with HOME here that copy, which is what
        # keeps a warm prefix across a restart, stays in the state folder, one per tier.
        env["HOME"] = str(ssd_dir / "home")
    return Command(tier.name, tuple(argv), env, frozenset(), tier.port)


def cluster_command(tier: Tier, bin_dir: Path, python: Path, hostfile: Path) -> Command:
    """An mlx-distributed tier: ``mlx.launch`` (the service: its process group holds every
    local rank and the ssh of every remote one) running ``mlx_lm.server`` with ``python`` on
    each host (the same path everywhere: `doctor` checks it); ``hostfile``: the hosts as
    mlx.launch reads them (``core.cluster.hostfile_text``). Rank 0 serves the tier's port.
    The prompt cache is capped at the profile's cache (KV per token counts every rank)."""
    assert tier.cluster is not None
    cache = tier.serving.cache_memory_mb * 1024 * 1024 if tier.serving is not None else None
    argv = launch_argv(tier.cluster, launcher=str(bin_dir / "mlx.launch"), python=str(python),
                       hostfile=str(hostfile), model_path=tier.path, port=tier.port,
                       prompt_cache_bytes=cache, extra=tier.extra_args)
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return Command(tier.name, tuple(argv), env, frozenset(), tier.port)


def retrieval_command(tier: Tier, bin_dir: Path) -> Command:
    """vllm-mlx 0.6 serving one encoder (or reranker) in a process of its own.

    `serve` always names a chat model; with --lazy-load-model it is never loaded (no chat
    request reaches this process: the front door sends it only /v1/embeddings or
    /v1/rerank), so the process holds the retrieval model alone. An encoder refuses input
    over its limit (400 naming it) instead of truncating it silently. A reranker is loaded
    by repo id from the hub cache its folder sits in (vllm-mlx refuses a folder path).
    """
    argv = [
        str(bin_dir / "vllm-mlx"), "serve", tier.path,
        "--host", LOCALHOST,
        "--port", str(tier.port),
        "--served-model-name", tier.name,
        "--lazy-load-model",
    ]
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if tier.kind == EMBEDDING:
        argv += ["--embedding-model", tier.served_model, "--embedding-overflow-policy", "error"]
        if tier.max_input_tokens is not None:
            argv += ["--embedding-max-length", str(tier.max_input_tokens)]
    else:
        argv += ["--rerank-model", tier.served_model]
        found = hub_cache_of(tier.path)
        if found is not None:
            env["HF_HUB_CACHE"] = found[1]
    argv += list(tier.extra_args)
    return Command(tier.name, tuple(argv), env, frozenset(), tier.port)


def gateway_command(
    stack: Stack, routes_path: Path, python: Path, gateway_key: str
) -> Command:
    """The front door (``python -m mlx_stack.gateway``) with the same interpreter as mlx-stack;
    the key travels in the environment, never in argv or files."""
    argv = [
        str(python), "-m", "mlx_stack.gateway",
        "--routes", str(routes_path),
        "--host", stack.gateway.host,
        "--port", str(stack.gateway.port),
    ]
    if stack.gateway.tls_cert or stack.gateway.tls_key:  # both or neither: the front door says so
        argv += ["--tls-cert", stack.gateway.tls_cert or "", "--tls-key", stack.gateway.tls_key or ""]
    env = {MASTER_KEY_ENV: gateway_key, "PYTHONUNBUFFERED": "1"}
    return Command(GATEWAY, tuple(argv), env, frozenset({MASTER_KEY_ENV}), stack.gateway.port)


def litellm_command(
    config_path: Path, bin_dir: Path, port: int | None, gateway_key: str, cloud_key: str
) -> Command:
    """LiteLLM for the cloud group only, on an internal 127.0.0.1 port (``port`` None: not
    chosen yet, shown as PORT)."""
    argv = [
        str(bin_dir / "litellm"),
        "--config", str(config_path),
        "--host", LOCALHOST,
        "--port", str(port) if port else "PORT",
        "--num_workers", "1",
    ]
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the cost map at start
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
        MASTER_KEY_ENV: gateway_key,
        CLOUD_KEY_ENV: cloud_key,
    }
    return Command(LITELLM, tuple(argv), env, frozenset({MASTER_KEY_ENV, CLOUD_KEY_ENV}), port or 0)


def render_dry_run(commands: Iterable[Command], mask: Callable[[str], str]) -> str:
    """Shell-ready lines, one per service, with every secret passed through ``mask``."""
    lines: list[str] = []
    for cmd in commands:
        env = " ".join(
            f"{k}={shlex.quote(mask(v) if k in cmd.secret_env else v)}" for k, v in sorted(cmd.env.items())
        )
        argv = " ".join(shlex.quote(a) for a in cmd.argv)
        lines.append(f"# {cmd.service}\n{env} {argv}".rstrip())
    return "\n".join(lines) + "\n"
