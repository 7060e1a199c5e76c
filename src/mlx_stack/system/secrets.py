"""Secrets live in files of mode 0600 under ``secrets/`` (mode 0700).

Nothing here prints a secret; callers show :func:`mask` of it.
"""

from __future__ import annotations

from pathlib import Path

from mlx_stack.paths import Paths
from mlx_stack.system.fs import atomic_write, ensure_private_dir, read_state_text

GATEWAY_KEY = "gateway-key"
OPENROUTER_KEY = "openrouter-key"


def mask(value: str | None) -> str:
    """A recognisable but useless form of a secret: ``sk-…abcd``."""
    if not value:
        return ""
    if len(value) <= 8:
        return "****"
    prefix = value[:3] if value.startswith("sk-") else ""
    return f"{prefix}…{value[-4:]}"


def _path(p: Paths, name: str) -> Path:
    return p.secret_file(name)


def read_secret(p: Paths, name: str) -> str | None:
    path = _path(p, name)
    text = read_state_text(path, hint=f"remove it and set it again (`mlx-stack config set {name}`)"
                           if name != GATEWAY_KEY else "remove it; `mlx-stack up` makes a new one")
    if text is None:
        return None
    return text.strip() or None


def write_secret(p: Paths, name: str, value: str) -> None:
    ensure_private_dir(p.secrets_dir)
    atomic_write(_path(p, name), value.strip() + "\n", mode=0o600)


def delete_secret(p: Paths, name: str) -> bool:
    try:
        _path(p, name).unlink()
    except FileNotFoundError:
        return False
    return True


def modes(p: Paths) -> tuple[int | None, dict[str, int]]:
    """Permission bits of ``secrets/`` (None if absent) and of each file in it (`doctor`)."""
    try:
        dir_mode = p.secrets_dir.stat().st_mode & 0o777
    except FileNotFoundError:
        return None, {}
    files: dict[str, int] = {}
    for entry in sorted(p.secrets_dir.iterdir()):
        if entry.is_file() and not entry.name.startswith("."):
            files[entry.name] = entry.stat().st_mode & 0o777
    return dir_mode, files


def ensure_gateway_key(p: Paths) -> str:
    """Return the gateway master key, generating it once (LiteLLM wants ``sk-``)."""
    existing = read_secret(p, GATEWAY_KEY)
    if existing:
        return existing
    import secrets as _random  # (hmac, hashlib, random: ~10 ms only a new key pays)

    key = "sk-mlxstack-" + _random.token_urlsafe(32)
    write_secret(p, GATEWAY_KEY, key)
    return key
