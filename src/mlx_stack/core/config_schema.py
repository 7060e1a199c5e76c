"""The user settings: their names, defaults and validation (pure, no I/O)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from mlx_stack.errors import NotFoundError, UsageError

QUANTS = ("int4", "int6", "int8", "bf16")  # core.catalog.QUANT_BITS: every quant the catalog has
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_WHOLE = re.compile(r"-?[0-9]+")  # ASCII digits only: not "٤٠", "４０", "5_000" or "+5"
MAX_VALUE_CHARS = 4096  # no setting is longer; a bigger value is a mistake (or an attack)
MAX_SECRET_CHARS = 512


def shown(text: object, limit: int = 40) -> str:
    """``text`` safe to echo in one line: printable, cut to ``limit`` characters."""
    raw = str(text)
    safe = "".join(c if c.isprintable() else "?" for c in raw[:limit])
    return repr(safe) + (f"… ({len(raw)} characters)" if len(raw) > limit else "")


SettingValue: TypeAlias = str | int | bool | None  # a setting's value, parsed


@dataclass(frozen=True)
class Key:
    name: str
    default: SettingValue
    allowed: str  # said in errors and in `config list`
    parse: Callable[[object], SettingValue]  # typed text, or a value read from config.yaml
    help: str
    secret: bool = False


def _bad(key: str, value: object, allowed: str) -> UsageError:
    return UsageError(
        f"invalid value {shown(value)} for {key}: expected {allowed}",
        hint="see `mlx-stack config list` for every key and what it accepts",
    )


def _int_range(key: str, lo: int, hi: int) -> Callable[[object], int]:
    def parse(raw: object) -> int:
        if isinstance(raw, bool):
            raise _bad(key, raw, f"a whole number from {lo} to {hi}")
        text = str(raw).strip()
        if not _WHOLE.fullmatch(text) or len(text) > 12:
            raise _bad(key, raw, f"a whole number from {lo} to {hi} (digits 0-9)")
        value = int(text)
        if not lo <= value <= hi:
            raise _bad(key, raw, f"a whole number from {lo} to {hi}")
        return value

    return parse


def _choice(key: str, choices: tuple[str, ...]) -> Callable[[object], str]:
    def parse(raw: object) -> str:
        value = str(raw).strip().lower()
        if value not in choices:
            raise _bad(key, raw, "one of " + ", ".join(choices))
        return value

    return parse


def _bool(key: str) -> Callable[[object], bool]:
    def parse(raw: object) -> bool:
        if isinstance(raw, bool):
            return raw
        value = str(raw).strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise _bad(key, raw, "true or false")

    return parse


def _path(key: str) -> Callable[[object], str]:
    """An absolute folder path (``~`` expanded), printable, of sane length. That it
    exists is checked where the value is set (this module does no I/O)."""

    def parse(raw: object) -> str:
        value = str(raw).strip()
        if not value:
            raise _bad(key, raw, "an absolute folder path")
        if len(value) > MAX_VALUE_CHARS or not value.isprintable():
            raise _bad(key, raw, "an absolute folder path of printable characters")
        value = os.path.expanduser(value)
        if not os.path.isabs(value):
            raise UsageError(
                f"invalid value {shown(raw)} for {key}: expected an absolute folder path",
                hint=f"give the full path, e.g. `mlx-stack config set {key} \"$PWD/{value}\"`",
            )
        return os.path.normpath(value)

    return parse


def _secret(key: str) -> Callable[[object], str]:
    def parse(raw: object) -> str:
        value = str(raw).strip()
        printable_ascii = all(" " < c < "\x7f" for c in value)
        if not value or not printable_ascii or len(value) > MAX_SECRET_CHARS:
            raise UsageError(
                f"invalid value for {key}: expected a non-empty key of printable ASCII without "
                f"spaces, at most {MAX_SECRET_CHARS} characters",
                hint=f"pipe it in: `printf %s \"$KEY\" | mlx-stack config set {key} -`",
            )
        return value

    return parse


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("openrouter-key", None, "an OpenRouter API key", _secret("openrouter-key"),
            "OpenRouter key; enables the cloud fallback group (stored 0600, shown masked)",
            secret=True),
        Key("default-quant", "int4", "int4, int6, int8 or bf16", _choice("default-quant", QUANTS),
            "quantization pulled and recommended by default"),
        Key("memory-budget-pct", 40, "1-100", _int_range("memory-budget-pct", 1, 100),
            "share of unified memory all tiers together may use"),
        Key("litellm-port", 4000, "1024-65535", _int_range("litellm-port", 1024, 65535),
            "port of the OpenAI-compatible gateway"),
        Key("model-dir", None, "a directory path", _path("model-dir"),
            "where models are downloaded (default: the Hugging Face cache)"),
        Key("auto-health-check", True, "true or false", _bool("auto-health-check"),
            "check every service with a real completion after `up`"),
        Key("log-max-size-mb", 50, "1-10000", _int_range("log-max-size-mb", 1, 10000),
            "rotate a service log when it grows past this size"),
        Key("log-max-files", 5, "1-100", _int_range("log-max-files", 1, 100),
            "rotated log files kept per service"),
        Key("log-prompts", False, "true or false", _bool("log-prompts"),
            "keep the start of each prompt that vllm-mlx logs in the tier logs (off: removed)"),
        Key("cluster-ssh-timeout", 5, "1-60", _int_range("cluster-ssh-timeout", 1, 60),
            "seconds `doctor` waits for ssh to reach a cluster tier's host"),
    )
}


def get_key(name: str) -> Key:
    try:
        return KEYS[name]
    except KeyError:
        raise NotFoundError(
            f"unknown config key {shown(name)}",
            hint="known keys: " + ", ".join(KEYS) + "; `auto` routing: routing.KEY (`mlx-stack status`)",
        ) from None


def validate_file_values(raw: dict[str, object], source: str) -> dict[str, SettingValue]:
    """Validate values read from config.yaml; errors name the file."""
    out: dict[str, SettingValue] = {}
    for name, value in raw.items():
        key = KEYS.get(name)
        if key is None or key.secret:
            raise UsageError(
                f"{source}: unknown key {shown(name)}",
                hint="fix or remove it; known keys: " + ", ".join(k for k in KEYS if not KEYS[k].secret),
                exit_code=3,
            )
        try:
            out[name] = key.parse(value)
        except UsageError as exc:
            raise UsageError(f"{source}: {exc.message}", hint=exc.hint, exit_code=3) from None
    return out
