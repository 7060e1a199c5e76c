"""Sizes: parsing them from the command line, and the one byte formatter (pure).

mlx-stack counts bytes the way macOS counts memory: "GB" means 1024^3 bytes, so a
"128 GB" Mac has 128 GB and a 30 GB budget is 30 x 1024^3 bytes. Every size shown to a
user goes through :func:`format_bytes` (:func:`gb` is its "GB, or unknown" form), so
memory, downloads and logs read in the same units. (Benchmark results keep their
documented decimal GB figures: they are data, not formatted bytes.)
"""

from __future__ import annotations

import re

from mlx_stack.errors import UsageError

KIB, MIB, GIB, TIB = 1024, 1024**2, 1024**3, 1024**4
_UNITS = {"mb": MIB, "gb": GIB, "g": GIB, "tb": TIB}
# The units format_bytes shows, smallest first; below a GB they show whole numbers.
_SHOWN = (("B", 1), ("KB", KIB), ("MB", MIB), ("GB", GIB), ("TB", TIB))
_WHOLE = frozenset({"B", "KB", "MB"})
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


def format_bytes(n: float, unit: str | None = None, *, digits: int = 1, show_unit: bool = True,
                 smallest: str = "B") -> str:
    """``n`` bytes in binary units named as macOS names memory (1 GB = 1024^3 bytes).

    ``unit`` (``"B"``, ``"KB"``, ``"MB"``, ``"GB"``, ``"TB"``) fixes the unit, with
    ``digits`` decimals: ``format_bytes(3 * GIB, "GB") == "3.0 GB"``. Without it, the
    largest unit that keeps the number at 1 or more is used, whole below a GB:
    ``"999 B"``, ``"403 KB"``, ``"512 MB"``, ``"4.5 GB"``; never below ``smallest`` (figures
    counted in MB: ``"0 MB"``). ``show_unit=False`` gives the number alone (for
    ``"1.0 / 2.0 GB"``).
    """
    sizes = dict(_SHOWN)
    if unit is None:
        floor = sizes[smallest]
        unit = next(name for name, size in reversed(_SHOWN) if abs(n) >= size or size == floor)
        digits = 0 if unit in _WHOLE else digits
    text = f"{n / sizes[unit]:.{digits}f}"
    return f"{text} {unit}" if show_unit else text


def format_mb(mb: float) -> str:
    """A figure counted in MB (memory plans) as ``format_bytes`` shows it: ``'512 MB'``,
    ``'4.5 GB'``, never below MB."""
    return format_bytes(mb * MIB, smallest="MB")


def gb(n: float | None) -> str:
    """Bytes as macOS shows memory: ``'12.5 GB'``, ``'unknown'`` for None/0."""
    return format_bytes(n, "GB") if n else "unknown"
