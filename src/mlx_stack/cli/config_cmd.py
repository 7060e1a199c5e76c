"""`mlx-stack config`: read and change the user settings."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    help="Show and change settings (~/.mlx-stack/config.yaml; keys are stored 0600).",
    no_args_is_help=True,
)


@app.command("list")
def list_(json_: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show every key with its value, its default and where the value came from."""
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.core.config_schema import KEYS
    from mlx_stack.paths import paths
    from mlx_stack.services import config

    settings = config.load(paths()).all()
    if json_:
        terminal.json([s.as_dict() for s in settings])
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("key", "value", "default", "source", "allowed"):
        table.add_column(col)
    for s in settings:
        table.add_row(
            s.key, _text(s.shown()), _text(s.default), s.source, KEYS[s.key].allowed
        )
    terminal.print(table)


@app.command("get")
def get(
    key: str = typer.Argument(..., help="Setting name, e.g. litellm-port."),
    json_: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print one setting's value (secrets masked)."""
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import config

    setting = config.load(paths()).setting(key)
    if json_:
        terminal.json(setting.as_dict())
    else:
        sys.stdout.write(_text(setting.shown()) + "\n")


@app.command("set", context_settings={"ignore_unknown_options": True})
def set_(
    key: str = typer.Argument(..., help="Setting name."),
    value: str = typer.Argument(
        None, help="New value; '-' or omitted reads it from stdin (keeps keys out of shell history)."
    ),
) -> None:
    """Validate and store one setting.

    `routing.*` keys change the `auto` rules and `tiers.NAME.mode` (resident | on-demand) /
    `tiers.NAME.idle-unload` (30s, 10m, 2h) a tier; `alias.PATTERN TIER` sends the model
    names matching a glob to a tier, `default-tier TIER` every name nothing matches; all
    live in stack.yaml.
    """
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.errors import UsageError
    from mlx_stack.paths import paths
    from mlx_stack.services import settings

    if value is None or value == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError(
                f"no value given for {key}",
                hint=f"`mlx-stack config set {key} VALUE`, or pipe the value in with `-`",
            )
        value = sys.stdin.read().strip()
    changed = settings.change(paths(), key, value)
    terminal.success(f"{key} = {_text(changed.value)}" + (f" ({changed.note})" if changed.note else ""))


@app.command("unset")
def unset(key: str = typer.Argument(..., help="Setting name.")) -> None:
    """Return one setting to its default."""
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import settings

    changed = settings.change(paths(), key, None)
    terminal.success(f"{key} reset to its default ({_text(changed.value)})"
                     + (f"; {changed.note}" if changed.note else ""))


@app.command("reset")
def reset(yes: bool = typer.Option(False, "--yes", "-y", help="Do it without asking.")) -> None:
    """Return every setting to its default and forget stored keys."""
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.errors import UsageError
    from mlx_stack.paths import paths
    from mlx_stack.services import config

    if not yes:
        raise UsageError(
            "config reset needs confirmation",
            hint="run `mlx-stack config reset --yes` to reset every setting",
        )
    config.reset(paths())
    terminal.success("settings reset to their defaults")


def _text(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
