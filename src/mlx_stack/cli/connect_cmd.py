"""`mlx-stack connect`: point a coding agent (Claude Code, Codex CLI, OpenCode) at this stack."""

from __future__ import annotations

import enum
import sys

import typer


class Client(enum.StrEnum):
    claude = "claude"
    codex = "codex"
    opencode = "opencode"


def connect(
    client: Client = typer.Argument(..., help="claude, codex or opencode."),
    print_only: bool = typer.Option(False, "--print", help="Print the configuration; change no file."),
    show_key: bool = typer.Option(False, "--show-key", help="Show the stack key in full (masked otherwise)."),
    json_: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write CLIENT's configuration for this stack, merged into its own file.

    claude: the `env` block of ~/.claude/settings.json (base URL, the stack key as
    ANTHROPIC_AUTH_TOKEN, no nonessential traffic, an output cap the tier accepts).
    codex: [model_providers.mlx-stack] in
    $CODEX_HOME/config.toml (~/.codex) and the profile file mlx-stack.config.toml (run
    `codex --profile mlx-stack`; the key comes from $MLX_STACK_API_KEY). opencode: provider
    `mlx-stack` in ~/.config/opencode/opencode.json. Other settings are kept; the file
    it changed is first copied to <name>.mlx-stack.bak.

    Exit codes: 0 written (or printed), 3 the client's file is not valid JSON/TOML or
    cannot be written (nothing changed), 4 no stack configured yet.
    """
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services.connect import connect as run

    result = run(paths(), client.value, print_only=print_only, show_key=show_key)
    if json_:
        terminal.json(result.as_dict())
        return
    if print_only:
        sys.stdout.write(result.text + "\n")
    for path in result.written:
        terminal.success(f"wrote {path}")
    for path in result.backups:
        terminal.info(f"the previous version is in {path}")
    if not print_only and not result.written:
        terminal.success(f"{client.value} already points at this stack")
    for step in result.next_steps:
        terminal.info(step)
