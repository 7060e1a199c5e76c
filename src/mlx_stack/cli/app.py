"""The command tree. Command modules import their domain code lazily."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from mlx_stack import __version__
from mlx_stack.errors import MlxStackError


class _RootGroup(TyperGroup):
    """Turns any error below into one red line and its exit code (never a traceback).

    Domain errors carry their own code; an OS error on a file is a state problem (3);
    Ctrl-C is 130; anything else is a bug (1), with the traceback only under
    ``MLX_STACK_DEBUG=1``.
    """

    # Any: click's Context, which typer 0.28 vendors (typer._click) and older typers import
    # from click: no one name fits the whole supported range.
    def invoke(self, ctx: Any) -> Any:
        _tighten_home()
        try:
            return super().invoke(ctx)
        except MlxStackError as exc:
            from mlx_stack.cli.terminal import terminal

            terminal.error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            from mlx_stack.cli.terminal import terminal

            terminal.error("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            from mlx_stack.cli.last_resort import is_usage_error, report

            if is_usage_error(exc):  # Click's own: it prints them itself (exit 2)
                raise

            raise typer.Exit(report(exc)) from None


def _tighten_home() -> None:
    """A state folder made by an older version (0755) becomes private (0700)."""
    import os
    import stat

    from mlx_stack.paths import paths

    try:
        home = paths().home
        st = os.stat(home)
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(home, 0o700)
    except OSError:
        pass  # missing, or not ours: the command itself says what is wrong


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
