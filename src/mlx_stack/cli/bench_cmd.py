"""`mlx-stack bench TARGET`: measure a tier or a model on this machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from mlx_stack.services.bench import Options, Outcome


def bench(
    target: str = typer.Argument(..., help="A running tier name, a catalog id, or a model folder."),
    save: bool = typer.Option(False, "--save", help="Remember the result: the recommender prefers it."),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    iterations: int = typer.Option(3, "--iterations", min=1, max=100,
                                   help="Passes over the fixed prompt set, one request at a time."),
    concurrency: str = typer.Option("1,4,8", "--concurrency", help="Concurrent streams to try, e.g. 1,4,8."),
    max_tokens: int = typer.Option(128, "--max-tokens", min=2, max=8192,
                                   help="Tokens generated per request."),
    prompts: int = typer.Option(None, "--prompts", min=1,
                                help="Use only the first N prompts of the set (shortest first)."),
    port: int = typer.Option(None, "--port", min=1024, max=65535,
                             help="Port of the temporary server (default: a free one)."),
) -> None:
    """Measure prompt and generation tokens/s, time to first token and peak memory, then the
    same at several concurrent streams; compare with the catalog or the estimate. A running
    embedding tier is measured in texts/s and tokens/s at batch 1, 16 and 64 instead.

    A model folder or catalog id is served by a temporary vllm-mlx that is stopped afterwards.
    Exit codes: 2 bad option, 4 unknown target, 5 port taken, 7 tier down or server failed,
    130 interrupted.
    """
    from mlx_stack.core.bench import parse_levels
    from mlx_stack.errors import UsageError
    from mlx_stack.services import bench as bench_service

    if _embedding_bench(target, save=save, json_=json_, iterations=iterations):
        return

    try:
        levels = parse_levels(concurrency)
    except ValueError as exc:
        raise UsageError(f"invalid --concurrency {concurrency!r}: {exc}",
                         hint="a comma-separated list, e.g. --concurrency 1,4,8") from None
    options = bench_service.Options(iterations=iterations, levels=levels, max_tokens=max_tokens,
                                    prompts=prompts)
    outcome = measure(target, save=save, options=options, port=port)
    if json_:
        from mlx_stack.cli.terminal import terminal

        terminal.json(outcome.as_dict())
        return
    show(outcome)


def _embedding_bench(target: str, *, save: bool, json_: bool, iterations: int) -> bool:
    """A running embedding tier: texts/s and tokens/s at batch 1/16/64 (services.bench_embeddings)."""
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import bench_embeddings

    p = paths()
    stack = bench_embeddings.embedding_tier(p, target)
    if stack is None:
        return False
    result = bench_embeddings.run(p, stack, target, rounds=max(3, iterations), save=save,
                                  on_progress=lambda msg: terminal.info(f"bench: {msg}"))
    if json_:
        terminal.json(result.as_dict())
        return True
    terminal.print(f"{result.tier} ({result.model}) at {result.url}; peak memory {result.peak_rss_gb:.2f} GB")
    for lv in result.levels:
        terminal.print(f"  batch {lv.batch:>3}: {lv.texts_s:8.1f} texts/s  {lv.tokens_s:9.0f} tokens/s  "
                       f"p50 {lv.p50_ms:8.1f} ms  ({lv.requests} requests)")
    if result.saved_to:
        terminal.success(f"saved to {result.saved_to}; recommendations now use its memory for {result.model}")
    return True


def measure(target: str, *, save: bool, options: Options | None = None, port: int | None = None) -> Outcome:
    """Run the benchmark with progress on stderr; also used by `pull --bench`.

    Ctrl-C and SIGTERM end it with exit code 130, the temporary server stopped."""
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.errors import ExitCode, MlxStackError
    from mlx_stack.paths import paths
    from mlx_stack.services import bench as bench_service
    from mlx_stack.services.bench_target import Interrupted

    try:
        return bench_service.run(paths(), target, options=options or bench_service.Options(),
                                 port=port, save=save,
                                 on_progress=lambda msg: terminal.info(f"bench: {msg}"))
    except (KeyboardInterrupt, Interrupted):
        raise MlxStackError("bench interrupted; no server of the benchmark is left running",
                            exit_code=ExitCode.INTERRUPTED) from None


def show(outcome: Outcome) -> None:
    """The result as tables and a bar chart on stdout; where it was saved on stderr."""
    from mlx_stack.cli import bench_view
    from mlx_stack.cli.terminal import terminal

    bench_view.render(terminal, outcome.result)
    if outcome.saved_to:
        model = outcome.result.model
        if model.startswith("local:"):
            terminal.success(f"saved to {outcome.saved_to} (a local folder, not a catalog model: "
                             "the recommender does not use it)")
        else:
            terminal.success(f"saved to {outcome.saved_to}; recommendations now use it for {model}")
