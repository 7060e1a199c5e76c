"""Types for JSON data (what ``json.loads`` and ``yaml.safe_load`` return), and small
narrowing helpers for code that reads such data without trusting its shape. Shared by
every layer, like ``errors.py``: it imports nothing of the package."""

from __future__ import annotations

from typing import TypeAlias, cast

JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
JSONObject: TypeAlias = dict[str, JSON]


def as_object(value: object) -> dict[str, object] | None:
    """``value`` if it is a mapping as parsed JSON or YAML makes (string keys), else None."""
    return cast(dict[str, object], value) if isinstance(value, dict) else None


def as_list(value: object) -> list[object]:
    """``value`` if it is a list, else an empty list."""
    return cast(list[object], value) if isinstance(value, list) else []


def to_int(value: object) -> int:
    """``int(value)`` for a number or numeric string, 0 for a missing (falsy) value; raises
    TypeError or ValueError for anything else, as ``int()`` does."""
    if not value:
        return 0
    if isinstance(value, int | float | str | bytes):
        return int(value)
    raise TypeError(f"not a number: {type(value).__name__}")
