"""`mlx-stack setup`: write the stack (stack.yaml) and start it.

Only the demo path exists so far (`--demo`); the recommender-driven flow plugs in
as another branch of :func:`setup` (see ``_setup_demo`` for the shape).
"""

from __future__ import annotations

import typer


def setup(
    demo: bool = typer.Option(
        False, "--demo",
        help="Three tiers of tiny models built here, offline, in seconds (they answer nonsense).",
    ),
    no_start: bool = typer.Option(False, "--no-start", help="Write the stack but start nothing."),
) -> None:
    """Choose what runs on this machine, write ~/.mlx-stack/stack.yaml and start it."""
    from mlx_stack.errors import UsageError

    if demo:
        _setup_demo(start=not no_start)
        return
    raise UsageError(
        "only `mlx-stack setup --demo` is available in this version",
        hint="run `mlx-stack setup --demo` to try the whole stack with tiny local models",
    )


def _setup_demo(*, start: bool) -> None:
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import demo_stack, lifecycle

    p = paths()
    terminal.info("building the demo models (tiny, random weights: they answer nonsense)…")
    result = demo_stack.write_demo_stack(p)
    for t in result.stack.tiers:
        terminal.info(f"  {t.name:<9} {t.model}  port {t.port}")
    terminal.success(f"wrote {p.stack_file}")
    if not start:
        terminal.info("start it with `mlx-stack up`")
        return
    terminal.info("starting (each service counts once it answered a real completion)…")
    up = lifecycle.up(p)
    if up.started:
        terminal.success(f"started {', '.join(up.started)} in {up.seconds:.1f} s")
    else:
        terminal.success("already running, nothing changed")
    terminal.info(f"endpoint: {up.endpoint}  (API key: `mlx-stack status --show-key`)")
