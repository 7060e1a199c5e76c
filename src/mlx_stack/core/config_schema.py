"""The user settings: their names, defaults and validation (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlx_stack.errors import NotFoundError, UsageError

QUANTS = ("int4", "int8", "bf16")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Key:
    name: str
    default: Any
    allowed: str  # said in errors and in `config list`
    parse: Callable[[str], Any]
    help: str
    secret: bool = False


def _bad(key: str, value: object, allowed: str) -> UsageError:
    return UsageError(
        f"invalid value {value!r} for {key}: expected {allowed}",
        hint="see `mlx-stack config list` for every key and what it accepts",
    )


def _int_range(key: str, lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise _bad(key, raw, f"a whole number from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise _bad(key, raw, f"a whole number from {lo} to {hi}")
        return value

    return parse


def _choice(key: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = str(raw).strip().lower()
        if value not in choices:
            raise _bad(key, raw, "one of " + ", ".join(choices))
        return value

    return parse


def _bool(key: str) -> Callable[[str], bool]:
    def parse(raw: str) -> bool:
        if isinstance(raw, bool):
            return raw
        value = str(raw).strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise _bad(key, raw, "true or false")

    return parse


def _path(key: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = str(raw).strip()
        if not value:
            raise _bad(key, raw, "a directory path")
        if "\n" in value or "\x00" in value:
            raise _bad(key, raw, "a directory path on one line")
        return value

    return parse


def _secret(key: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = str(raw).strip()
        if not value or any(c.isspace() for c in value):
            raise UsageError(
                f"invalid value for {key}: expected a non-empty key without spaces",
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
        Key("default-quant", "int4", "int4, int8 or bf16", _choice("default-quant", QUANTS),
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
    )
}


def get_key(name: str) -> Key:
    try:
        return KEYS[name]
    except KeyError:
        raise NotFoundError(
            f"unknown config key {name!r}",
            hint="known keys: " + ", ".join(KEYS),
        ) from None


def validate_file_values(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Validate values read from config.yaml; errors name the file."""
    out: dict[str, Any] = {}
    for name, value in raw.items():
        key = KEYS.get(name)
        if key is None or key.secret:
            raise UsageError(
                f"{source}: unknown key {name!r}",
                hint="fix or remove it; known keys: " + ", ".join(k for k in KEYS if not KEYS[k].secret),
                exit_code=3,
            )
        try:
            out[name] = key.parse(value)
        except UsageError as exc:
            raise UsageError(f"{source}: {exc.message}", hint=exc.hint, exit_code=3) from None
    return out
