"""`setup --demo`: a three-tier stack of tiny models built here, offline, in seconds.

The demo models have random weights: they answer fast and in nonsense. They exist
so the whole control plane (servers, gateway, fallbacks, status) runs anywhere, and an
agent client can run on it: a realistic vocabulary (~4 characters a token) and a 64K
window on `standard`, the tier agent traffic goes to. With ``tool=`` (`setup --demo
--demo-tool NAME`) `standard` is a scripted model that calls that tool on each user
turn and answers in text after the result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from mlx_stack.core.stack import EMBEDDING, Gateway, Stack, Tier
from mlx_stack.errors import ConflictError
from mlx_stack.paths import Paths
from mlx_stack.system import ports
from mlx_stack.system.locks import file_lock

FIRST_TIER_PORT = 8100
# name, seed, context window. `standard` takes agent traffic (the alias table sends the
# agent clients' model names there): 64K tokens holds a coding agent's ~19K-token first
# turn and a session's growth; `longctx` is the longest.
DEMO_TIERS = (("standard", 0, 65536), ("fast", 1, 2048), ("longctx", 2, 131072))
TOOL_COMMAND = "echo hello from mlx-stack"
TOOL_ANSWER = "The tool ran; its output is above. That was one tool round trip on the demo stack."
DEMO_PARSER = "hermes"  # the demo chat template speaks hermes-style <tool_call>
# A demo tier's need, measured instead of the estimator's formula (whose 0.9 GB activation
# term is fitted on real models): RSS 0.85-0.9 GB idle, 1.32 GB peak with 5.5k-token
# prompts (benchmarks/memory_soak.py, vllm-mlx 0.6 on the CPU backend). So three demo
# tiers fit an 8 GB Mac's GPU working-set limit.
DEMO_NEED_BYTES = 1536 * 1024 * 1024
# `setup --demo --retrieval`: a tiny encoder and a tiny reranker, each in its own process.
# Measured on the CPU backend here: the encoder's process 0.81 GB RSS after use
# (benchmarks/embeddings.py); one process holding both the encoder and the reranker (which
# imports transformers) 1.76 GB. The models are 0.5 MB: it is vllm-mlx's imports.
DEMO_RETRIEVAL = (("embed", "embedding"), ("rerank", "rerank"))
DEMO_RERANK_REPO = "mlx-stack/demo-rerank"
DEMO_RETRIEVAL_NEED_BYTES = 1792 * 1024 * 1024


@dataclass
class DemoResult:
    stack: Stack
    built: list[str]


def demo_model_id(name: str) -> str:
    return f"mlx-stack/demo-{name}"


def _pick_ports(previous: Stack | None, gateway_port: int, names: list[str]) -> dict[str, int]:
    """Keep the ports of an existing stack's tiers; otherwise the first free ones from 8100."""
    chosen: dict[str, int] = {}
    if previous is not None:
        for t in previous.tiers:
            if t.name in names:
                chosen[t.name] = t.port
    port = FIRST_TIER_PORT
    for name in names:
        if name in chosen:
            continue
        while port == gateway_port or port in chosen.values() or not ports.is_free(port):
            port += 1
        chosen[name] = port
        port += 1
    return chosen


def tool_script(tool: str) -> tuple[str, str]:
    """The scripted standard tier's texts: a tool call (hermes style), then the answer."""
    import json

    arguments = {"command": TOOL_COMMAND, "description": "Print a greeting"}
    call = json.dumps({"name": tool, "arguments": arguments})
    return f"<tool_call>\n{call}\n</tool_call>", TOOL_ANSWER


def _model_dir(p: Paths, name: str, tool: str | None) -> Path:
    return p.demo_model_dir(name if tool is None or name != "standard" else f"{name}-tool-{tool}")


def demo_retrieval_tiers(p: Paths, ports_by_name: dict[str, int]) -> tuple[Tier, ...]:
    """The demo encoder and reranker as retrieval tiers (their models built if missing)."""
    from mlx_stack.services import demo_models

    encoder = demo_models.build_encoder_model(p.demo_model_dir("embed"))
    reranker = demo_models.build_reranker_model(p.demo_model_dir("hub"), DEMO_RERANK_REPO)
    paths = {"embed": str(encoder), "rerank": str(reranker)}
    limit = demo_models.DEMO_ENCODER_MAX_LENGTH
    return tuple(Tier(name=name, model=demo_model_id(name), path=paths[name], port=ports_by_name[name],
                      kind=kind, max_input_tokens=limit if kind == EMBEDDING else None)
                 for name, kind in DEMO_RETRIEVAL)


def write_demo_stack(p: Paths, *, tool: str | None = None, retrieval: bool = False) -> DemoResult:
    """Build the demo models (idempotent) and write stack.yaml for them, under the lock.

    ``tool``: the standard tier is a scripted model that calls this tool on each user
    turn and answers in plain text after its result (``demo_models.build_scripted_model``);
    ``retrieval`` adds the demo encoder and reranker tiers.
    """
    from mlx_stack.services import config, demo_models, stack_store
    from mlx_stack.services.running import running_record

    gateway_port = int(config.load(p).get("litellm-port"))
    built = []
    for name, seed, ctx in DEMO_TIERS:
        dest = _model_dir(p, name, tool)
        if tool is not None and name == "standard":
            text, answer = tool_script(tool)
            demo_models.build_scripted_model(dest, text, after_tool=answer, context_length=ctx)
        else:
            demo_models.build_random_model(dest, seed=seed, context_length=ctx)
        built.append(str(dest))

    with file_lock(p.lock_file, what="setup"):
        previous = stack_store.load(p) if stack_store.exists(p) else None
        if previous is not None:
            running = [s for s in previous.services if running_record(p, s) is not None]
            if running and not _is_demo(previous):
                raise ConflictError(
                    "a stack is running (" + ", ".join(running) + ")",
                    hint="stop it first with `mlx-stack down`, then run `mlx-stack setup --demo` again",
                )
        names = [n for n, _, _ in DEMO_TIERS] + ([n for n, _ in DEMO_RETRIEVAL] if retrieval else [])
        tier_ports = _pick_ports(previous, gateway_port, names)
        tiers = tuple(
            Tier(
                name=name, model=demo_model_id(name), path=str(_model_dir(p, name, tool)),
                port=tier_ports[name], tool_call_parser=DEMO_PARSER, context_window=ctx,
            )
            for name, _, ctx in DEMO_TIERS
        )
        if retrieval:
            tiers += demo_retrieval_tiers(p, tier_ports)
            built += [t.path for t in tiers if t.retrieval]
        gateway = previous.gateway if previous is not None and _is_demo(previous) else Gateway(
            port=gateway_port)
        stack = Stack(tiers=tiers, fallback_order=tuple(n for n, _, _ in DEMO_TIERS), gateway=gateway)
        from mlx_stack.services import serving_plan  # the runtime caps, as for any stack

        floor = {True: DEMO_RETRIEVAL_NEED_BYTES, False: DEMO_NEED_BYTES}
        needs = {t.name: replace(n, need_bytes=max(floor[t.retrieval], n.weights_bytes + n.kv_bytes))
                 for t in tiers if (n := serving_plan.need_from_folder(t))}
        stack = serving_plan.plan_stack(p, stack, needs=needs).stack
        stack_store.save(p, stack)
    return DemoResult(stack, built)


def _is_demo(stack: Stack) -> bool:
    return all(t.model.startswith("mlx-stack/demo-") for t in stack.tiers)
