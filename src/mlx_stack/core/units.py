"""Parsing sizes given on the command line (pure).

mlx-stack counts memory the way macOS does: "GB" means 1024^3 bytes, so a "128 GB"
Mac has 128 GB and a 30 GB budget is 30 x 1024^3 bytes.
"""

from __future__ import annotations

import re

from mlx_stack.errors import UsageError

GIB = 1024**3
_UNITS = {"mb": 1024**2, "gb": GIB, "g": GIB, "tb": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_budget(text: str, total_memory_bytes: int | None = None) -> int:
    """``30gb``/``30GB``/``30 GB``/``512mb``/``40%`` -> bytes. A bare number is refused
    (GB or percent?), as are zero, negatives and anything else."""
    raw = str(text).strip()
    hint = "give a size with a unit, e.g. --budget 30gb, or a share of memory, e.g. --budget 40%"
    if raw.endswith("%"):
        try:
            pct = float(raw[:-1])
        except ValueError:
            raise UsageError(f"invalid budget {text!r}", hint=hint) from None
        if not 0 < pct <= 100:
            raise UsageError(f"invalid budget {text!r}: a share must be above 0% and at most 100%", hint=hint)
        if not total_memory_bytes:
            raise UsageError(f"budget {text!r} needs the machine's memory, which is unknown", hint=hint)
        return int(total_memory_bytes * pct / 100)
    if raw.startswith("-"):
        raise UsageError(f"invalid budget {text!r}: it must be more than 0", hint=hint)
    m = _SIZE.match(raw)
    if not m:
        raise UsageError(f"invalid budget {text!r}", hint=hint)
    value, unit = float(m.group(1)), m.group(2).lower()
    if not unit:
        raise UsageError(f"budget {text!r} has no unit", hint=hint)
    if unit not in _UNITS:
        raise UsageError(f"invalid budget {text!r}: unknown unit {m.group(2)!r}", hint=hint)
    if value <= 0:
        raise UsageError(f"invalid budget {text!r}: it must be more than 0", hint=hint)
    return int(value * _UNITS[unit])


def parse_memory_gb(text: str) -> float:
    """``--memory 128`` / ``128gb`` / ``128 GB`` -> 128.0 (GB, as macOS counts them)."""
    m = _SIZE.match(str(text))
    if not m or m.group(2).lower() not in ("", "gb", "g"):
        raise UsageError(f"invalid --memory {text!r}",
                         hint="give the unified memory in GB, e.g. --memory 128")
    value = float(m.group(1))
    if value <= 0:
        raise UsageError(f"invalid --memory {text!r}: it must be more than 0", hint="e.g. --memory 128")
    return value


def gb(n: float | None) -> str:
    """Bytes as macOS shows them: ``'12.5 GB'`` (1024^3), ``'unknown'`` for None/0."""
    return f"{n / GIB:.1f} GB" if n else "unknown"
