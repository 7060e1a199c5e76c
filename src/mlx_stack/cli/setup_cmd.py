"""`mlx-stack setup`: write the stack (stack.yaml) and start it.

`--demo` builds tiny local models (below); every other shape (recommended, --model,
--add/--remove) runs through ``mlx_stack.services.setup`` (see ``cli/setup_view.py``).
"""

from __future__ import annotations

import typer


def setup(
    demo: bool = typer.Option(
        False, "--demo",
        help="Three tiers of tiny models built here, offline, in seconds (they answer nonsense).",
    ),
    demo_tool: str = typer.Option(
        None, "--demo-tool", metavar="TOOL",
        help="With --demo: the standard tier is a scripted model that calls TOOL (with a "
        "'command' argument) on each user turn and answers in text after the tool's result: "
        "one tool round trip through an agent client (Bash for Claude Code, bash for OpenCode).",
    ),
    no_start: bool = typer.Option(False, "--no-start", help="Write the stack but start nothing."),
    retrieval: bool = typer.Option(
        False, "--retrieval",
        help="With --demo: add a tiny encoder (/v1/embeddings) and reranker (/v1/rerank) tier.",
    ),
    accept_defaults: bool = typer.Option(
        False, "--accept-defaults", "-y",
        help="No questions: take the recommendation (never a gated model). Implied without a terminal.",
    ),
    intent: str = typer.Option(
        None, "--intent", metavar="INTENT",
        help="agent (coding agents: a 64K-128K window on standard; proposed when it fits), "
        "balanced (the default otherwise) or agent-fleet.",
    ),
    budget_pct: int = typer.Option(
        None, "--budget-pct", metavar="PCT",
        help="Share of memory all tiers may use, 10-90 (default: config memory-budget-pct).",
    ),
    add: list[str] = typer.Option(
        None, "--add", metavar="MODEL",
        help="Add a model to the current stack (catalog id, org/name or a local folder); repeatable.",
    ),
    as_: list[str] = typer.Option(
        None, "--as", metavar="TIER", help="Tier name for the --add at the same position.",
    ),
    remove: list[str] = typer.Option(
        None, "--remove", metavar="TIER", help="Remove a tier from the current stack; repeatable.",
    ),
    model: str = typer.Option(
        None, "--model", metavar="MODEL", help="Quick setup: one tier (standard) serving this model.",
    ),
    on_demand: bool = typer.Option(
        False, "--on-demand",
        help="The --add tiers are on-demand: the front door starts them on the first request "
        "that needs them and stops them when idle.",
    ),
    idle_unload: str = typer.Option(
        None, "--idle-unload", metavar="DURATION",
        help="With --on-demand: stop the tier after this long without requests (30s, 10m, 2h; default 10m).",
    ),
    add_embedding: str = typer.Option(
        None, "--add-embedding", metavar="MODEL",
        help="Add an embedding model (/v1/embeddings) to the current stack, as tier `embed`.",
    ),
    add_rerank: str = typer.Option(
        None, "--add-rerank", metavar="MODEL",
        help="Add a reranker (/v1/rerank) to the current stack, as tier `rerank`.",
    ),
    no_pull: bool = typer.Option(False, "--no-pull", help="Download nothing: use models already on disk."),
    force: bool = typer.Option(
        False, "--force",
        help="Start even when the memory guard finds the tiers do not fit (exit 5 otherwise).",
    ),
) -> None:
    """Choose what runs on this machine, write ~/.mlx-stack/stack.yaml and start it.

    Without flags: detect the hardware, recommend a model per tier, confirm, download, start.
    On a running stack, --add/--remove start and stop only those tiers; the others keep serving.
    """
    from mlx_stack.core.stack_change import SetupFlags, check_flags

    flags = SetupFlags(
        demo=demo, accept_defaults=accept_defaults, intent=intent, budget_pct=budget_pct,
        add=tuple(add or ()), as_=tuple(as_ or ()), remove=tuple(remove or ()), model=model,
        no_pull=no_pull, no_start=no_start, force=force, on_demand=on_demand, idle_unload=idle_unload,
        demo_tool=demo_tool, add_embedding=add_embedding, add_rerank=add_rerank,
    )
    check_flags(flags)
    if retrieval and not demo:
        from mlx_stack.errors import UsageError

        raise UsageError("--retrieval applies to --demo only",
                         hint="for real models: `setup --add-embedding MODEL` or `--add-rerank MODEL`")
    if demo:
        _setup_demo(start=not no_start, force=force, tool=demo_tool, retrieval=retrieval)
        return
    from mlx_stack.cli.setup_view import run_setup

    run_setup(flags)


def _setup_demo(*, start: bool, force: bool = False, tool: str | None = None,
                retrieval: bool = False) -> None:
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import demo_stack, lifecycle

    p = paths()
    terminal.info("building the demo models (tiny, random weights: they answer nonsense)…")
    result = demo_stack.write_demo_stack(p, tool=tool, retrieval=retrieval)
    if tool is not None:
        terminal.info(f"standard is scripted: it calls {tool} on each user turn, then answers in text")
    for t in result.stack.tiers:
        terminal.info(f"  {t.name:<9} {t.model:<24} port {t.port}")
    from mlx_stack.cli.serving_view import render_stack_plan

    render_stack_plan(result.stack)
    terminal.success(f"wrote {p.stack_file}")
    if not start:
        terminal.info("start it with `mlx-stack up`")
        return
    from mlx_stack.system import interrupt

    terminal.info("starting (each service counts once it answered a real completion)…")
    with interrupt.signals_raise():  # Ctrl-C/SIGTERM: stop what this setup started, exit 130
        up = lifecycle.up(p, progress=terminal.info, force=force)
    if up.started:
        terminal.success(f"started {', '.join(up.started)} in {up.seconds:.1f} s")
    else:
        terminal.success("already running, nothing changed")
    terminal.info(f"endpoint: {up.endpoint}  (API key: `mlx-stack status --show-key`)")
