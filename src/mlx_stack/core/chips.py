"""Apple Silicon chip variants: GPU cores, memory bandwidth, memory options (pure data).

Source: shared/data/apple-silicon-chips.csv (vendor specifications; M5 Pro/Max from
press reports; M5 Ultra unverified). Binned Max chips differ in bandwidth, so a
variant is (chip, GPU cores). Prefill speed per GPU core and generation is calibrated
in ``core.estimator``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ChipVariant:
    """One Apple Silicon chip variant, as its vendor lists it."""

    chip: str  # "M4 Max"
    cpu_cores: str  # as the vendor writes it: "16 (12P+4E)"
    gpu_cores: int
    bandwidth_gbs: float
    memory_options_gb: tuple[int, ...]
    confidence: str  # "vendor spec" | "press reports" | "unverified"

    @property
    def generation(self) -> int:
        return chip_generation(self.chip) or 0


_V = ChipVariant
CHIPS: tuple[ChipVariant, ...] = (
    _V("M1", "8 (4P+4E)", 7, 68.25, (8, 16), "vendor spec"),
    _V("M1", "8 (4P+4E)", 8, 68.25, (8, 16), "vendor spec"),
    _V("M1 Pro", "8 (6P+2E)", 14, 200, (16, 32), "vendor spec"),
    _V("M1 Pro", "10 (8P+2E)", 16, 200, (16, 32), "vendor spec"),
    _V("M1 Max", "10 (8P+2E)", 24, 400, (32, 64), "vendor spec"),
    _V("M1 Max", "10 (8P+2E)", 32, 400, (32, 64), "vendor spec"),
    _V("M1 Ultra", "20 (16P+4E)", 48, 800, (64, 128), "vendor spec"),
    _V("M1 Ultra", "20 (16P+4E)", 64, 800, (64, 128), "vendor spec"),
    _V("M2", "8 (4P+4E)", 8, 100, (8, 16, 24), "vendor spec"),
    _V("M2", "8 (4P+4E)", 10, 100, (8, 16, 24), "vendor spec"),
    _V("M2 Pro", "10 (6P+4E)", 16, 200, (16, 32), "vendor spec"),
    _V("M2 Pro", "12 (8P+4E)", 19, 200, (16, 32), "vendor spec"),
    _V("M2 Max", "12 (8P+4E)", 30, 400, (32, 64, 96), "vendor spec"),
    _V("M2 Max", "12 (8P+4E)", 38, 400, (32, 64, 96), "vendor spec"),
    _V("M2 Ultra", "24 (16P+8E)", 60, 800, (64, 128, 192), "vendor spec"),
    _V("M2 Ultra", "24 (16P+8E)", 76, 800, (64, 128, 192), "vendor spec"),
    _V("M3", "8 (4P+4E)", 8, 100, (8, 16, 24), "vendor spec"),
    _V("M3", "8 (4P+4E)", 10, 100, (8, 16, 24), "vendor spec"),
    _V("M3 Pro", "11 (5P+6E)", 14, 150, (18, 36), "vendor spec"),
    _V("M3 Pro", "12 (6P+6E)", 18, 150, (18, 36), "vendor spec"),
    _V("M3 Max", "14 (10P+4E)", 30, 300, (36, 96), "vendor spec"),
    _V("M3 Max", "16 (12P+4E)", 40, 400, (48, 64, 128), "vendor spec"),
    _V("M3 Ultra", "28 (20P+8E)", 60, 819, (96, 256), "vendor spec"),
    _V("M3 Ultra", "32 (24P+8E)", 80, 819, (96, 256, 512), "vendor spec"),
    _V("M4", "8 (4P+4E)", 8, 120, (16, 24, 32), "vendor spec"),
    _V("M4", "10 (4P+6E)", 10, 120, (16, 24, 32), "vendor spec"),
    _V("M4 Pro", "12 (8P+4E)", 16, 273, (24, 48, 64), "vendor spec"),
    _V("M4 Pro", "14 (10P+4E)", 20, 273, (24, 48, 64), "vendor spec"),
    _V("M4 Max", "14 (10P+4E)", 32, 410, (36,), "vendor spec"),
    _V("M4 Max", "16 (12P+4E)", 40, 546, (48, 64, 128), "vendor spec"),
    _V("M5", "10 (4P+6E)", 10, 153, (16, 24, 32), "vendor spec"),
    _V("M5 Pro", "15 (5S+10P)", 16, 307, (24, 48, 64), "press reports"),
    _V("M5 Pro", "18 (6S+12P)", 20, 307, (24, 48, 64), "press reports"),
    _V("M5 Max", "18 (6S+12P)", 32, 460, (36,), "press reports"),
    _V("M5 Max", "18 (6S+12P)", 40, 614, (48, 64, 128), "press reports"),
    _V("M5 Ultra", "up to 36", 80, 1200, (512,), "unverified"),
)

TIERS = ("", "Pro", "Max", "Ultra")
_NAME = re.compile(r"^(?:apple\s+)?m(\d+)(?:\s+(pro|max|ultra))?$", re.IGNORECASE)


def normalize_chip_name(raw: str) -> str | None:
    """``"Apple M4 Max"``/``"m4 max"``/``"M4Max"`` -> ``"M4 Max"``; None if not an M-series name."""
    text = " ".join(raw.replace("(TM)", "").split())
    text = re.sub(r"(?i)^(apple\s+)?(m\d+)(pro|max|ultra)$", r"\1\2 \3", text)
    m = _NAME.match(text)
    if not m:
        return None
    tier = (m.group(2) or "").capitalize()
    return f"M{int(m.group(1))}" + (f" {tier}" if tier else "")


def chip_generation(chip: str) -> int | None:
    m = _NAME.match(chip)
    return int(m.group(1)) if m else None


def chip_tier(chip: str) -> str:
    """"" (base), "Pro", "Max" or "Ultra"."""
    m = _NAME.match(chip)
    return (m.group(2) or "").capitalize() if m else ""


def known_chip_names() -> list[str]:
    names: list[str] = []
    for v in CHIPS:
        if v.chip not in names:
            names.append(v.chip)
    return names


def variants(chip: str) -> list[ChipVariant]:
    """The known bins of ``chip`` (exact normalized name), fewest GPU cores first."""
    return sorted((v for v in CHIPS if v.chip == chip), key=lambda v: v.gpu_cores)


def find_variant(chip: str, gpu_cores: int | None) -> ChipVariant | None:
    """The bin with exactly ``gpu_cores``; the top bin when the count is unknown."""
    bins = variants(chip)
    if not bins:
        return None
    if gpu_cores is None:
        return bins[-1]
    for v in bins:
        if v.gpu_cores == gpu_cores:
            return v
    return None


def nearest_known(chip: str) -> ChipVariant | None:
    """For a chip newer than the table (``M7 Pro``): the top bin of the newest known
    chip of the same tier. Used only as a labelled assumption, never silently."""
    gen, tier = chip_generation(chip), chip_tier(chip)
    if gen is None:
        return None
    same_tier = [v for v in CHIPS if chip_tier(v.chip) == tier and v.generation <= gen]
    if not same_tier:
        return None
    newest = max(v.generation for v in same_tier)
    return max((v for v in same_tier if v.generation == newest), key=lambda v: v.gpu_cores)
