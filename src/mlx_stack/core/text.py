"""Text that is safe to write to a log line or a terminal (pure).

Client-supplied text (request paths, model names, upstream error messages) must not
forge log lines (a newline), move the cursor (CR, ESC sequences) or hide in NULs: every
C0/C1 control character, DEL and lone surrogates are shown as escapes (``\\x1b``).
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_KEEP_NEWLINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with control characters escaped (tabs kept; newlines too when asked)."""
    pattern = _CONTROL_KEEP_NEWLINES if keep_newlines else _CONTROL
    return pattern.sub(_escape, text)
