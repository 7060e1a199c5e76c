"""Text from outside (logs, client input) made safe to print on a terminal (pure).

A log line may carry what a client sent: ESC sequences (colours, cursor moves, a
terminal's title or clipboard), a carriage return that hides the start of a line, NUL.
:func:`escape_controls` shows every C0 and C1 control, DEL included, as a visible
escape (``\\x1b``, ``\\r``, ``\\x85``; a lone surrogate as ``\\ud800``) and keeps
newline and tab.
"""

from __future__ import annotations

_NAMED = {0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t"}


def _table(keep: str) -> dict[int, str]:
    codes = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
    table = {c: _NAMED.get(c, f"\\x{c:02x}") for c in codes if chr(c) not in keep}
    # lone UTF-16 surrogates (a client's "\ud800"): a UTF-8 log or terminal cannot encode them
    table.update({c: f"\\u{c:04x}" for c in range(0xD800, 0xE000)})
    return table


_ESCAPES = _table(keep="\n\t")
_ESCAPES_ONE_LINE = _table(keep="")


def escape_controls(text: str, *, one_line: bool = False) -> str:
    """``text`` with its control characters as visible escapes; newline and tab kept
    (``one_line``: escaped too, for a value shown inside one line)."""
    return text.translate(_ESCAPES_ONE_LINE if one_line else _ESCAPES)
