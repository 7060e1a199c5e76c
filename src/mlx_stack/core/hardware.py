"""The hardware profile and the pure parsers of macOS hardware queries (no I/O).

Inputs are the texts printed by ``sysctl``, ``ioreg -rc AGXAccelerator -d1`` and
``system_profiler SP...DataType -json``; ``system.sysinfo`` runs them. Unknown or
future chips (``Apple M7 Pro``) degrade to "bandwidth assumed from the newest known
chip of the same tier", stated in ``notes``, never a crash.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TypedDict, cast

from mlx_stack.core.units import GIB, MIB, TIB, format_bytes
from mlx_stack.json_types import JSONObject

GB = 1_000_000_000


@dataclass(frozen=True)
class PerfLevel:
    """One CPU performance level as macOS names it (Super, Performance, Efficiency...)."""

    name: str
    cores: int


@dataclass(frozen=True)
class HardwareProfile:
    """What the estimator and the scoring need to know about a machine.

    ``kind`` is ``"apple-silicon"`` (a Mac, detected), ``"plan"`` (a Mac described with
    ``--chip``...) or ``"cpu"`` (Linux or any non-Apple machine: MLX's CPU backend).
    ``bandwidth_gbs`` / ``gpu_cores`` / ``gpu_limit_bytes`` are None when unknown.
    """

    kind: str
    chip: str
    memory_bytes: int
    gpu_cores: int | None = None
    bandwidth_gbs: float | None = None
    bandwidth_source: str = "unknown"
    gpu_limit_bytes: int | None = None
    gpu_limit_source: str = "unknown"
    cpu_levels: tuple[PerfLevel, ...] = ()
    cpu_cores: int | None = None
    rosetta: bool = False
    chip_known: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)
    os_name: str = "macOS"

    @property
    def label(self) -> str:
        if self.kind == "cpu":
            return f"{self.os_name} CPU profile: {self.chip} (MLX CPU backend, no Apple GPU)"
        cores = f", {self.gpu_cores}-core GPU" if self.gpu_cores else ""
        plan = " (planned)" if self.kind == "plan" else ""
        return f"Apple {self.chip}{cores}, {format_bytes(self.memory_bytes, 'GB', digits=0)}{plan}"

    @property
    def profile_key(self) -> str:
        """A stable key for saved benchmarks: ``m4-max-40c-128gb`` / ``cpu-16gb``."""
        mem = f"{round(self.memory_bytes / GIB)}gb"
        if self.kind == "cpu":
            return f"cpu-{mem}"
        cores = f"-{self.gpu_cores}c" if self.gpu_cores else ""
        return f"{self.chip.lower().replace(' ', '-')}{cores}-{mem}"

    def as_dict(self) -> JSONObject:
        return {
            "kind": self.kind,
            "os": self.os_name,
            "label": self.label,
            "chip": self.chip,
            "chip_known": self.chip_known,
            "gpu_cores": self.gpu_cores,
            "memory_bytes": self.memory_bytes,
            "memory_gb": round(self.memory_bytes / GIB, 1),
            "bandwidth_gbs": self.bandwidth_gbs,
            "bandwidth_source": self.bandwidth_source,
            "gpu_limit_bytes": self.gpu_limit_bytes,
            "gpu_limit_source": self.gpu_limit_source,
            "cpu_cores": self.cpu_cores,
            "cpu_levels": [{"name": lvl.name, "cores": lvl.cores} for lvl in self.cpu_levels],
            "rosetta": self.rosetta,
            "profile_key": self.profile_key,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> HardwareProfile:
        """The profile :meth:`as_dict` wrote (its derived keys ignored); ValueError when a
        field is missing or of the wrong type."""

        def text(key: str) -> str:
            value = d.get(key)
            if not isinstance(value, str):
                raise ValueError(f"hardware profile: {key} is not text")
            return value

        def number(key: str, kind: type[int] | type[float], optional: bool = True) -> int | None:
            value = d.get(key)
            if value is None and optional:
                return None
            if isinstance(value, bool) or not isinstance(value, int if kind is int else int | float):
                raise ValueError(f"hardware profile: {key} is not a number")
            return value  # type: ignore[return-value]  # a float for kind=float

        def flag(key: str) -> bool:
            value = d.get(key)
            if not isinstance(value, bool):
                raise ValueError(f"hardware profile: {key} is not true/false")
            return value

        levels, notes = d.get("cpu_levels"), d.get("notes")
        if not isinstance(levels, list) or not isinstance(notes, list):
            raise ValueError("hardware profile: cpu_levels or notes is not a list")
        perf: list[PerfLevel] = []
        for lvl in cast(list[object], levels):
            item = cast(dict[str, object], lvl) if isinstance(lvl, dict) else {}
            name, cores = item.get("name"), item.get("cores")
            if not isinstance(name, str) or not isinstance(cores, int) or isinstance(cores, bool):
                raise ValueError("hardware profile: a cpu level is not {name, cores}")
            perf.append(PerfLevel(name, cores))
        memory = number("memory_bytes", int, optional=False)
        bandwidth = number("bandwidth_gbs", float)
        return cls(
            kind=text("kind"), chip=text("chip"), memory_bytes=memory or 0,
            gpu_cores=number("gpu_cores", int),
            bandwidth_gbs=float(bandwidth) if bandwidth is not None else None,
            bandwidth_source=text("bandwidth_source"),
            gpu_limit_bytes=number("gpu_limit_bytes", int), gpu_limit_source=text("gpu_limit_source"),
            cpu_levels=tuple(perf), cpu_cores=number("cpu_cores", int), rosetta=flag("rosetta"),
            chip_known=flag("chip_known"), notes=tuple(str(n) for n in cast(list[object], notes)),
            os_name=text("os"),
        )


# --- parsers ---------------------------------------------------------------

def parse_sysctl(text: str) -> dict[str, str]:
    """``key: value`` (or ``key = value``) lines into a dict; other lines ignored."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*[:=]\s*(.*?)\s*$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _int(value: object) -> int | None:
    try:
        return int(str(value).strip().strip('"'))
    except (TypeError, ValueError):
        return None


def perf_levels(sysctl: dict[str, str]) -> tuple[PerfLevel, ...]:
    """CPU levels, fastest first, by their own names (``hw.perflevelN.name``).

    Works without ``hw.nperflevels`` (some samples omit it) and with levels whose
    name is missing (named ``level N``).
    """
    count = _int(sysctl.get("hw.nperflevels"))
    indices = {int(m.group(1)) for k in sysctl if (m := re.match(r"hw\.perflevel(\d+)\.", k))}
    if count is not None:
        indices |= set(range(count))
    levels: list[PerfLevel] = []
    for i in sorted(indices):
        cores = _int(sysctl.get(f"hw.perflevel{i}.physicalcpu"))
        if cores is None:
            continue
        name = sysctl.get(f"hw.perflevel{i}.name") or f"level {i}"
        levels.append(PerfLevel(name, cores))
    return tuple(levels)


def parse_ioreg_gpu_cores(text: str) -> int | None:
    """``"gpu-core-count" = 10`` from ``ioreg -rc AGXAccelerator -d1``."""
    m = re.search(r'"gpu-core-count"\s*=\s*(\d+)', text)
    return int(m.group(1)) if m else None


def _sp_items(text: str, key: str) -> list[dict[str, object]]:
    try:
        data = json.loads(text)
    except ValueError:
        return []
    items = cast(dict[str, object], data).get(key) if isinstance(data, dict) else None
    return [cast(dict[str, object], i) for i in cast(list[object], items)
            if isinstance(i, dict)] if isinstance(items, list) else []


def parse_sp_displays(text: str) -> tuple[int | None, str | None]:
    """(GPU cores, chip name) from ``system_profiler SPDisplaysDataType -json``.

    ``sppci_cores`` is a string ("10"); the built-in GPU is the Apple one."""
    for item in _sp_items(text, "SPDisplaysDataType"):
        cores = _int(item.get("sppci_cores"))
        model = item.get("sppci_model") or item.get("_name")
        if cores is not None or (isinstance(model, str) and "Apple" in model):
            return cores, model if isinstance(model, str) else None
    return None, None


def parse_memory_text(text: str) -> int | None:
    """``"16 GB"`` -> bytes (Apple counts GB as GiB here: 16 GB is 17179869184 bytes)."""
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(GB|TB|MB)\s*$", str(text), re.IGNORECASE)
    if not m:
        return None
    scale = {"MB": MIB, "GB": GIB, "TB": TIB}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


class SpHardware(TypedDict, total=False):
    """What :func:`parse_sp_hardware` reads (empty when the output has no hardware item)."""

    chip: str | None
    machine_model: str | None
    memory_bytes: int | None
    cpu_cores: int | None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def parse_sp_hardware(text: str) -> SpHardware:
    """chip, model, memory_bytes and CPU cores from ``SPHardwareDataType -json``.

    ``number_processors`` reads ``proc 18:6:0:12`` (total, then per level, fastest
    first as far as published samples go)."""
    for item in _sp_items(text, "SPHardwareDataType"):
        out: SpHardware = {
            "chip": _text(item.get("chip_type")),
            "machine_model": _text(item.get("machine_model")),
            "memory_bytes": parse_memory_text(str(item.get("physical_memory", ""))),
            "cpu_cores": None,
        }
        m = re.match(r"^proc\s+(\d+)", str(item.get("number_processors", "")))
        if m:
            out["cpu_cores"] = int(m.group(1))
        return out
    return {}


def default_gpu_limit(memory_bytes: int) -> int:
    """Metal's recommended working set when it cannot be read: about 2/3 of RAM up
    to 24 GB, 3/4 above (shared/data/hw-samples/README.md; macOS 26 allows more)."""
    share = 2 / 3 if memory_bytes <= 24 * GIB else 3 / 4
    return int(memory_bytes * share)


# --- building a profile ------------------------------------------------------

def bandwidth_for(chip: str, gpu_cores: int | None) -> tuple[float | None, str, bool, list[str]]:
    """(bandwidth GB/s, where it came from, chip known?, notes) for an M-series chip."""
    from mlx_stack.core import chips  # (detection only: a kept profile does without its table)

    notes: list[str] = []
    bins = chips.variants(chip)
    if bins:
        exact = chips.find_variant(chip, gpu_cores)
        if exact is not None:
            src = "chip table" + ("" if gpu_cores else f" (assumed {exact.gpu_cores}-core GPU bin)")
            return exact.bandwidth_gbs, src, True, notes
        bws = {v.bandwidth_gbs for v in bins}
        closest = min(bins, key=lambda v: abs(v.gpu_cores - (gpu_cores or 0)))
        notes.append(f"{chip} with {gpu_cores} GPU cores is not in the chip table; "
                     f"bandwidth taken from the {closest.gpu_cores}-core bin")
        src = "chip table" if len(bws) == 1 else f"chip table (nearest bin, {closest.gpu_cores} cores)"
        return closest.bandwidth_gbs, src, True, notes
    near = chips.nearest_known(chip)
    if near is None:
        notes.append(f"{chip} is not a known Apple Silicon chip: bandwidth unknown")
        return None, "unknown", False, notes
    notes.append(f"{chip} is newer than the chip table: bandwidth assumed from "
                 f"{near.chip} ({near.gpu_cores}-core GPU), likely an underestimate")
    return near.bandwidth_gbs, f"assumed from {near.chip}", False, notes


def profile_from_mac(
    sysctl_text: str,
    *,
    ioreg_text: str = "",
    sp_displays_json: str = "",
    sp_hardware_json: str = "",
    working_set_bytes: int | None = None,
) -> HardwareProfile:
    """Build a profile from the raw outputs of a Mac's hardware queries.

    Any of them may be empty (a command failed); missing facts become None and a note.
    ``working_set_bytes`` is Metal's recommended maximum working set when known.
    """
    from mlx_stack.core import chips  # (detection only: a kept profile does without its table)

    sc = parse_sysctl(sysctl_text)
    hw: SpHardware = parse_sp_hardware(sp_hardware_json) if sp_hardware_json else {}
    sp_cores, sp_model = parse_sp_displays(sp_displays_json) if sp_displays_json else (None, None)
    notes: list[str] = []

    rosetta = sc.get("sysctl.proc_translated", "0").strip() == "1"
    brand = sc.get("machdep.cpu.brand_string", "")
    raw_chip = brand if brand and "VirtualApple" not in brand else (hw.get("chip") or sp_model or "")
    if rosetta:
        notes.append("running under Rosetta (x86_64 Python): install an arm64 Python for MLX")
    chip = chips.normalize_chip_name(raw_chip) or (raw_chip.strip() or "unknown Apple chip")

    memory = _int(sc.get("hw.memsize")) or hw.get("memory_bytes") or 0
    if not memory:
        notes.append("memory size could not be read")
    gpu_cores = parse_ioreg_gpu_cores(ioreg_text) or sp_cores
    if gpu_cores is None:
        notes.append("GPU core count could not be read")
    levels = perf_levels(sc)
    cpu_cores = sum(lvl.cores for lvl in levels) or _int(sc.get("hw.physicalcpu")) or hw.get("cpu_cores")

    bandwidth, bw_src, known, bw_notes = bandwidth_for(chip, gpu_cores)
    notes += bw_notes
    wired_mb = _int(sc.get("iogpu.wired_limit_mb"))
    if working_set_bytes:
        limit, limit_src = working_set_bytes, "Metal recommended working set"
    elif wired_mb:
        limit, limit_src = wired_mb * 1024 * 1024, "iogpu.wired_limit_mb"
    elif memory:
        limit, limit_src = default_gpu_limit(memory), "default share of memory (estimated)"
    else:
        limit, limit_src = None, "unknown"
    return HardwareProfile(
        kind="apple-silicon", chip=chip, memory_bytes=memory, gpu_cores=gpu_cores,
        bandwidth_gbs=bandwidth, bandwidth_source=bw_src, gpu_limit_bytes=limit,
        gpu_limit_source=limit_src, cpu_levels=levels, cpu_cores=cpu_cores,
        rosetta=rosetta, chip_known=known, notes=tuple(notes),
    )


def cpu_profile(
    cpu_name: str, memory_bytes: int, cpu_cores: int | None, bandwidth_gbs: float | None = None,
    os_name: str = "Linux",
) -> HardwareProfile:
    """A non-Mac machine (Linux): MLX runs on the CPU; bandwidth unknown unless given."""
    notes = ["no Apple GPU: MLX runs on the CPU backend; speeds are not estimated"
             if bandwidth_gbs is None else "bandwidth given by the user"]
    return HardwareProfile(
        kind="cpu", chip=cpu_name or "unknown CPU", memory_bytes=memory_bytes,
        bandwidth_gbs=bandwidth_gbs,
        bandwidth_source="given" if bandwidth_gbs is not None else "unknown",
        gpu_limit_bytes=None, gpu_limit_source="none (CPU memory)",
        cpu_cores=cpu_cores, chip_known=False, notes=tuple(notes), os_name=os_name,
    )
