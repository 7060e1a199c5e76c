"""Where the coding agents keep their config files, and writing one with a backup.

The locations follow each client's own rules: Claude Code ``$CLAUDE_CONFIG_DIR`` (else
``~/.claude``), Codex ``$CODEX_HOME`` (else ``~/.codex``), OpenCode
``$XDG_CONFIG_HOME/opencode`` (else ``~/.config/opencode``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mlx_stack.system.fs import atomic_write

BACKUP_SUFFIX = ".mlx-stack.bak"


def _dir(env: str, default: str) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else Path.home() / default


def config_file(client: str) -> Path:
    """The file `mlx-stack connect CLIENT` merges into."""
    if client == "claude":
        return _dir("CLAUDE_CONFIG_DIR", ".claude") / "settings.json"
    if client == "codex":
        return _dir("CODEX_HOME", ".codex") / "config.toml"
    if client == "opencode":
        xdg = os.environ.get("XDG_CONFIG_HOME")
        return (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "opencode" / "opencode.json"
    raise ValueError(f"unknown client {client!r}")


def codex_profile_file(name: str) -> Path:
    """``$CODEX_HOME/<name>.config.toml``: what ``codex --profile <name>`` layers on top."""
    return _dir("CODEX_HOME", ".codex") / f"{name}.config.toml"


def read_text(path: Path) -> str | None:
    """The file's text, or None when it does not exist (OSError / UnicodeDecodeError
    otherwise, for the caller to name)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def write_with_backup(path: Path, text: str, *, private: bool = False) -> tuple[bool, Path | None]:
    """Write ``text`` atomically unless the file already holds it: (changed, backup). A
    file that was there and differs is first copied to ``<name>.mlx-stack.bak``. The file
    keeps its mode, or gets 0600 when ``private`` (it holds a key) or new."""
    old = read_text(path)
    if old == text:
        return False, None
    backup = None
    mode = 0o600
    if old is not None:
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        shutil.copy2(path, backup)
        os.chmod(backup, 0o600)
        mode = 0o600 if private else path.stat().st_mode & 0o777
    atomic_write(path, text, mode=mode)
    return True, backup
