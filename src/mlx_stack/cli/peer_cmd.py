"""`mlx-stack peer add/list/remove`: other stacks' front doors this one also serves (issue 26)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

app = typer.Typer(
    help="Serve other Macs' tiers through this front door (peers: their URL + key).",
    no_args_is_help=True,
)


@app.command("add")
def add(
    url: str = typer.Argument(..., help="The peer's front door, e.g. http://mac-b.local:4000 or https://..."),
    key_file: Path = typer.Option(None, "--key-file",
                                  help="A file holding the peer's key (else it is read from stdin)."),
    name: str = typer.Option(None, "--name", help="The peer's name (default: from its host name)."),
    ca_file: Path = typer.Option(None, "--ca-file",
                                 help="https: the CA (or self-signed certificate) its certificate is checked "
                                      "against (default: the system's CAs)."),
    no_check: bool = typer.Option(False, "--no-check", help="Do not ask the peer for its models now."),
    json_: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Add a peer: its tiers and aliases join this front door's (least outstanding requests
    among the nodes serving a tier; this node first on a tie, unless gateway.prefer-peers).

    The key (the peer's stack key) is read from --key-file or stdin, never from the command
    line, stored 0600 in secrets/peer-NAME and shown masked. Exit codes: 0 added, 2 bad URL,
    name or key, 3 stack.yaml unreadable, 4 no stack / key or CA file not found, 5 a peer
    with that name or URL exists (or the lock is held).
    """
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.errors import UsageError
    from mlx_stack.paths import paths
    from mlx_stack.services import peers

    if key_file is not None:
        key = peers.read_key_file(key_file)
    else:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("no key given for the peer",
                             hint="pipe it in (`mlx-stack peer add URL < key.txt`) or use --key-file FILE")
        key = sys.stdin.read(4096)
    added = peers.add(paths(), url, key, name=name, ca_file=str(ca_file) if ca_file else None,
                      check=not no_check)
    if json_:
        terminal.json(added.as_dict())
        return
    terminal.success(f"peer {added.peer.name} added: {added.peer.url} (key {added.peer.key})")
    if added.answered:
        terminal.info("it answers; its tiers: " + (", ".join(added.tiers) or "none"))
    elif not no_check:
        terminal.warn(f"it does not answer now ({added.problem}); the front door keeps checking it")


@app.command("list")
def list_(json_: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The peers in stack.yaml (keys masked); `status` shows whether each answers."""
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import peers

    found = peers.list_peers(paths())
    if json_:
        terminal.json(found.as_dict())
        return
    if not found.peers:
        terminal.info("no peers (`mlx-stack peer add URL`)")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("name", "url", "key", "ca file"):
        table.add_column(col)
    for row in found.peers:
        table.add_row(row.name, row.url, row.key, row.ca_file or "")
    terminal.print(table)


@app.command("remove")
def remove(
    name: str = typer.Argument(..., help="The peer's name (`mlx-stack peer list`)."),
    json_: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Remove a peer and its stored key. Exit codes: 0 removed, 4 no such peer."""
    from mlx_stack.cli.terminal import terminal
    from mlx_stack.paths import paths
    from mlx_stack.services import peers

    row = peers.remove(paths(), name)
    if json_:
        terminal.json(row.as_dict())
        return
    terminal.success(f"peer {row.name} removed ({row.url}); its key is deleted")
