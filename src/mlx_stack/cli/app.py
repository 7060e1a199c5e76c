"""The command tree. Command modules import their domain code lazily."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from mlx_stack import __version__


class _RootGroup(TyperGroup):
    """Turns any error below into one red line and its exit code (cli/guard.py)."""

    def invoke(self, ctx: Any) -> Any:
        from mlx_stack.cli.guard import Failed, guarded

        try:
            return guarded(lambda: super(_RootGroup, self).invoke(ctx))
        except Failed as exc:
            raise typer.Exit(exc.code) from None


app = typer.Typer(
    name="mlx-stack",
    cls=_RootGroup,
    help="Run several local LLMs behind one OpenAI-compatible endpoint on Apple Silicon.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"mlx-stack {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Run several local LLMs behind one OpenAI-compatible endpoint on Apple Silicon.

    Exit codes: 0 ok, 1 internal error, 2 bad usage or value, 3 corrupt state
    file, 4 not found, 5 conflict (port, lock, memory, disk), 6 network,
    7 service failed, 8 unsupported platform, 130 interrupted.
    """


def _register() -> None:
    from mlx_stack.cli import config_cmd

    app.add_typer(config_cmd.app, name="config")

    from mlx_stack.cli import models_cmd, status_cmd

    app.command("models")(models_cmd.models)
    app.command("status")(status_cmd.status)

    from mlx_stack.cli import open_cmd

    app.command("open")(open_cmd.open_dashboard)

    from mlx_stack.cli import pull_cmd

    app.command("pull")(pull_cmd.pull)

    from mlx_stack.cli import lifecycle_cmd, setup_cmd

    app.command("setup")(setup_cmd.setup)
    app.command("up")(lifecycle_cmd.up)
    app.command("down")(lifecycle_cmd.down)

    from mlx_stack.cli import bench_cmd

    app.command("bench")(bench_cmd.bench)

    from mlx_stack.cli import install_cmd

    app.command("install")(install_cmd.install)
    app.command("uninstall")(install_cmd.uninstall)

    from mlx_stack.cli import logs_cmd

    app.command("logs")(logs_cmd.logs)

    from mlx_stack.cli import watch_cmd

    app.command("watch")(watch_cmd.watch)

    from mlx_stack.cli import doctor_cmd

    app.command("doctor")(doctor_cmd.doctor)

    from mlx_stack.cli import connect_cmd

    app.command("connect")(connect_cmd.connect)

    from mlx_stack.cli import peer_cmd

    app.add_typer(peer_cmd.app, name="peer")


_register()
