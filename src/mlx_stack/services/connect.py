"""`mlx-stack connect claude|codex|opencode`: point a coding agent at this stack.

Merges one entry into the client's own config file (:mod:`mlx_stack.core.client_config`
says what and why), keeping every other setting; the file it changed is first copied to
``<name>.mlx-stack.bak``. ``print_only`` writes nothing and returns the text instead. The
key is shown masked unless ``show_key``; in Claude Code's settings it is written in full
(the file gets mode 0600), Codex reads it from ``$MLX_STACK_API_KEY`` and OpenCode from the
stack's key file (``{file:...}``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlx_stack.core import client_config as cc
from mlx_stack.core.stack import Stack
from mlx_stack.errors import StateError
from mlx_stack.json_types import JSONObject
from mlx_stack.paths import Paths
from mlx_stack.system import agent_files, secrets

_HINT = "fix the file (or move it away) and run `mlx-stack connect` again; nothing was changed"


@dataclass
class Connected:
    client: str
    written: list[str] = field(default_factory=list[str])  # files changed
    backups: list[str] = field(default_factory=list[str])
    text: str = ""  # what was (or, with print_only, would be) written: our part, key masked
    next_steps: list[str] = field(default_factory=list[str])

    def as_dict(self) -> JSONObject:
        return {"client": self.client, "written": list(self.written), "backups": list(self.backups),
                "text": self.text, "next_steps": list(self.next_steps)}


def endpoint(stack: Stack) -> cc.Endpoint:
    return cc.Endpoint(stack.gateway.host, stack.gateway.port, stack.gateway.scheme)


def _read(path: Path) -> str | None:
    try:
        return agent_files.read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}",
                         hint=_HINT) from None


def _merged(make: Callable[[], str]) -> str:
    try:
        return make()
    except cc.ClientFileError as exc:
        raise StateError(str(exc), hint=_HINT) from None


def connect(p: Paths, client: str, *, print_only: bool = False, show_key: bool = False) -> Connected:
    from mlx_stack.services import gateway_config, stack_store

    stack = stack_store.load(p)
    ep = endpoint(stack)
    # --print changes nothing, not even the secrets folder
    key = (secrets.read_secret(p, secrets.GATEWAY_KEY) or "") if print_only else secrets.ensure_gateway_key(p)
    shown = key if show_key else (secrets.mask(key) or "<made at `mlx-stack up`>")
    out = Connected(client)
    path = agent_files.config_file(client)
    if client == "claude":
        from mlx_stack.core.aliases import AGENT, pick_tier

        agent = pick_tier(AGENT, stack.tier_names, stack.fallback_order)
        window = gateway_config.windows(stack).get(agent) if agent else None
        env = cc.claude_env(ep, shown, window)
        out.text = json.dumps({"env": env}, indent=2)
        if not print_only:
            text = _read(path)
            merged = _merged(lambda: cc.merge_claude(text, ep, key, str(path), window))
            _write(out, path, merged, private=True)
        out.next_steps = ["run `claude`: its own model names (opus, sonnet, haiku) reach this stack's "
                          "tiers through the built-in aliases"]
    elif client == "codex":
        key_file = p.secret_file(secrets.GATEWAY_KEY)
        export = f"export {cc.KEY_ENV}={key}" if show_key else f'export {cc.KEY_ENV}="$(cat {key_file})"'
        profile = agent_files.codex_profile_file(cc.PROVIDER)
        out.text = (f"# {path}\n{cc.codex_table(ep)}\n# {profile}\n{cc.codex_profile()}\n"
                    f"# your shell\n{export}")
        if not print_only:
            text = _read(path)
            merged = _merged(lambda: cc.merge_codex(text, ep, str(path)))
            _write(out, path, merged)
            _write(out, profile, cc.codex_profile())
        out.next_steps = [export, f"codex --profile {cc.PROVIDER}",
                          f'codex exec --profile {cc.PROVIDER} "..."   (one non-interactive turn)']
    else:
        key_file = str(p.secret_file(secrets.GATEWAY_KEY))
        windows: dict[str, int | None] = {**gateway_config.windows(stack), "auto": None}
        provider = cc.opencode_provider(ep, key_file, windows)
        out.text = json.dumps({"provider": {cc.PROVIDER: provider}}, indent=2)
        if not print_only:
            text = _read(path)
            merged = _merged(lambda: cc.merge_opencode(text, ep, key_file, windows, str(path)))
            _write(out, path, merged)
        first = stack.tier_names[0]
        out.next_steps = [f'opencode run -m {cc.PROVIDER}/{first} "..."   '
                          f"(or pick {cc.PROVIDER} in `opencode`'s model list)"]
    return out


def _write(out: Connected, path: Path, text: str, *, private: bool = False) -> None:
    try:
        changed, backup = agent_files.write_with_backup(path, text, private=private)
    except OSError as exc:
        raise StateError(f"cannot write {path}: {exc.strerror or exc}", hint=_HINT) from None
    if changed:
        out.written.append(str(path))
    if backup is not None:
        out.backups.append(str(backup))


@dataclass(frozen=True)
class ClientState:
    client: str
    file: str
    connected: bool
    problem: str | None  # None: it points at this stack


def client_states(p: Paths, stack: Stack) -> list[ClientState]:
    """For doctor: each client whose file mentions mlx-stack, and whether it points here."""
    ep = endpoint(stack)
    key = secrets.read_secret(p, secrets.GATEWAY_KEY)
    states: list[ClientState] = []
    for client in cc.CLIENTS:
        path = agent_files.config_file(client)
        try:
            text = agent_files.read_text(path)
        except (OSError, UnicodeDecodeError) as exc:
            states.append(ClientState(client, str(path), True, f"cannot read it: {exc}"))
            continue
        if text is None or not cc.is_connected(client, text):
            states.append(ClientState(client, str(path), False, None))
            continue
        states.append(ClientState(client, str(path), True, cc.problem(client, text, ep, key, str(path))))
    return states
