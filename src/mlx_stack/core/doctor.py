"""`mlx-stack doctor`: each check as a pure function of facts gathered elsewhere.

``services.doctor`` collects the facts (hardware queries, versions, ports, files,
the login service, the running services) through ``system/``; every decision about
PASS / WARN / FAIL and every fix is here, so the macOS cases are tested with their
inputs on any machine.

States: PASS; WARN (works, but worth a look); FAIL (something will not work until
fixed); SKIP (does not apply here, e.g. Metal on Linux). Exit code: 1 if any check
FAILed, else 0 (WARN and SKIP included).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mlx_stack.core.hardware import HardwareProfile
from mlx_stack.core.units import GIB, MIB, format_bytes
from mlx_stack.json_types import as_object

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
STATES = (PASS, WARN, FAIL, SKIP)

# The packages the stack runs on, in the order shown. MLX comes in two halves of the same
# version: mlx and its backend, mlx-metal on macOS (a dependency of mlx there), mlx-cpu
# elsewhere (the mlx[cpu] extra).
PACKAGES = ("mlx", "mlx-metal", "mlx-cpu", "mlx-lm", "vllm-mlx", "litellm")
COMMANDS = ("vllm-mlx", "litellm")  # run from the interpreter's bin folder by `up`

HF_CACHE_WARN, HF_CACHE_FAIL = 20 * GIB, 2 * GIB  # a mid-size int4 model is 5-20 GB
STATE_WARN, STATE_FAIL = 1 * GIB, 100 * MIB  # logs, pid files, demo models


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    status: str
    detail: str
    fix: str | None = None
    data: Mapping[str, object] = field(default_factory=dict[str, object])

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "title": self.title, "status": self.status, "detail": self.detail,
                "fix": self.fix, "data": dict(self.data)}

    @staticmethod
    def from_dict(data: object) -> Check:
        """The inverse of :meth:`as_dict` (for a check of a redacted report)."""
        d = as_object(data) or {}
        fix = d.get("fix")
        return Check(str(d["id"]), str(d["title"]), str(d["status"]), str(d["detail"]),
                     fix if isinstance(fix, str) else None, as_object(d.get("data")) or {})


def exit_code(checks: Iterable[Check]) -> int:
    """1 if any check failed, else 0."""
    return 1 if any(c.status == FAIL for c in checks) else 0


def summary(checks: Sequence[Check]) -> dict[str, int]:
    return {s: sum(1 for c in checks if c.status == s) for s in STATES}


def _gb(n: float | None) -> str:
    return "?" if n is None else format_bytes(n, "GB")


# --- hardware -----------------------------------------------------------------

# The sysctl values the profile is built from, shown with the hardware check.
SYSCTL_KEYS = ("machdep.cpu.brand_string", "hw.memsize", "hw.physicalcpu", "hw.nperflevels",
               "sysctl.proc_translated", "iogpu.wired_limit_mb")


def hardware(profile: HardwareProfile, platform: str, sysctl: Mapping[str, str] | None = None) -> Check:
    """The profile `status` and `setup` use, with the values behind it in ``data``."""
    values = {k: v for k, v in (sysctl or {}).items()
              if k in SYSCTL_KEYS or re.match(r"hw\.perflevel\d+\.(name|physicalcpu)$", k)}
    data = {**profile.as_dict(), **({"sysctl": values} if values else {})}
    if profile.kind == "cpu":
        if platform == "darwin":
            return Check("hardware", "hardware", FAIL, f"{profile.chip}: not an Apple Silicon Mac",
                         "MLX needs an Apple M-series chip on macOS; use a Mac with Apple Silicon", data)
        return Check("hardware", "hardware", PASS,
                     f"{profile.label}, {_gb(profile.memory_bytes)} memory", None, data)
    detail = (f"{profile.label}; bandwidth {profile.bandwidth_gbs or '?'} GB/s "
              f"({profile.bandwidth_source}); GPU limit {_gb(profile.gpu_limit_bytes)}")
    if not profile.memory_bytes:
        return Check("hardware", "hardware", FAIL, detail + "; memory size unreadable",
                     "`sysctl hw.memsize` failed: attach `mlx-stack doctor --report` to a bug", data)
    if profile.gpu_cores is None or profile.bandwidth_gbs is None or not profile.chip_known:
        why = "; ".join(profile.notes) or "part of the profile is unknown"
        return Check("hardware", "hardware", WARN, f"{detail}; {why}",
                     "estimates may be off: attach `mlx-stack doctor --report FILE` to a bug so the "
                     "chip can be added", data)
    return Check("hardware", "hardware", PASS, detail, None, data)


def gpu_limit(profile: HardwareProfile, sysctl: Mapping[str, str]) -> Check:
    """Metal's working-set limit: the most memory the GPU may wire for the models."""
    wired = sysctl.get("iogpu.wired_limit_mb")
    data = {"gpu_limit_bytes": profile.gpu_limit_bytes, "source": profile.gpu_limit_source,
            "iogpu.wired_limit_mb": wired}
    if profile.kind == "cpu":
        return Check("gpu-limit", "GPU memory limit", SKIP, "no Apple GPU: models use CPU memory", None, data)
    limit, memory = profile.gpu_limit_bytes, profile.memory_bytes
    if limit is None or not memory:
        return Check("gpu-limit", "GPU memory limit", WARN, "unknown", "see the hardware check", data)
    share = limit / memory
    data = {**data, "share_of_memory": round(share, 3)}
    detail = f"{_gb(limit)} ({share:.0%} of memory, {profile.gpu_limit_source})"
    if "Metal" not in profile.gpu_limit_source:
        return Check("gpu-limit", "GPU memory limit", WARN, detail + "; MLX did not report Metal's value",
                     "the budget uses this estimate; check the mlx check below", data)
    if share < 0.5:
        return Check("gpu-limit", "GPU memory limit", WARN, detail + "; lower than macOS's default",
                     "iogpu.wired_limit_mb may be set low: `sudo sysctl iogpu.wired_limit_mb=0` "
                     "restores the default", data)
    return Check("gpu-limit", "GPU memory limit", PASS, detail, None, data)


def rosetta(profile: HardwareProfile, platform: str, arch: str) -> Check:
    data = {"python_arch": arch, "translated": profile.rosetta}
    if platform != "darwin":
        return Check("rosetta", "Rosetta", SKIP, "not macOS", None, data)
    if profile.rosetta or arch != "arm64":
        return Check("rosetta", "Rosetta", FAIL, f"this Python is {arch}, translated by Rosetta",
                     "MLX needs a native arm64 Python: install one (python.org, Homebrew on /opt/homebrew, "
                     "or `uv python install`) and reinstall mlx-stack with it", data)
    return Check("rosetta", "Rosetta", PASS, "native arm64 Python", None, data)


def python(version: tuple[int, int, int], executable: str, implementation: str) -> Check:
    text = ".".join(map(str, version))
    data = {"version": text, "executable": executable, "implementation": implementation}
    if version[:2] < (3, 11):
        return Check("python", "Python", FAIL, f"{implementation} {text}: mlx-stack needs 3.11 or newer",
                     "install Python 3.11+ and reinstall mlx-stack with it", data)
    return Check("python", "Python", PASS, f"{implementation} {text} ({executable})", None, data)


# --- packages ---------------------------------------------------------------------

def _release(version: str) -> tuple[int, ...]:
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()


def _cmp(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    width = max(len(a), len(b))
    pa, pb = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    return (pa > pb) - (pa < pb)


_OPS: dict[str, Callable[[int], bool]] = {
    ">=": lambda c: c >= 0, "<=": lambda c: c <= 0, ">": lambda c: c > 0, "<": lambda c: c < 0,
    "==": lambda c: c == 0, "!=": lambda c: c != 0, "~=": lambda c: c >= 0}


def satisfies(version: str, specifier: str) -> bool:
    """``1.83.9`` against ``<2,>=1.83.7,!=1.82.7`` (release numbers only: enough here)."""
    have = _release(version)
    for part in filter(None, (p.strip() for p in specifier.split(","))):
        m = re.match(r"(>=|<=|==|!=|~=|>|<)\s*(.+)", part)
        if m and not _OPS[m.group(1)](_cmp(have, _release(m.group(2)))):
            return False
    return True


def requirements(lines: Iterable[str], platform: str) -> dict[str, str]:
    """``{name: specifier}`` of our own dependencies that apply on ``platform`` (from the
    installed package's metadata: ``mlx<0.40,>=0.32; sys_platform == "darwin"``)."""
    out: dict[str, str] = {}
    for line in lines:
        req, _, marker = line.partition(";")
        if "extra ==" in marker:
            continue
        m = re.search(r"sys_platform\s*(==|!=)\s*['\"]([^'\"]+)['\"]", marker)
        if m and (platform == m.group(2)) != (m.group(1) == "=="):
            continue
        nm = re.match(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)", req)
        if nm:
            out[nm.group(1).lower().replace("_", "-")] = nm.group(3).strip()
    return out


def packages(versions: Mapping[str, str | None], required: Mapping[str, str], platform: str,
             commands: Mapping[str, str | None]) -> Check:
    """Versions of what the stack runs on, against our own requirements; and the two
    programs `up` starts, next to this interpreter (``commands``: name -> path or None)."""
    backend = "mlx-metal" if platform == "darwin" else "mlx-cpu"
    names = [n for n in PACKAGES if n not in ("mlx-metal", "mlx-cpu") or n == backend]
    rows = {n: {"version": versions.get(n), "required": required.get(n)} for n in names}
    data = {"packages": rows, "commands": dict(commands)}
    missing = [n for n in names if versions.get(n) is None]
    no_cmd = [n for n, path in commands.items() if path is None]
    shown = ", ".join(f"{n} {versions.get(n) or 'missing'}" for n in names)
    if missing or no_cmd:
        what = ", ".join([*missing, *(f"the {n} command" for n in no_cmd if n not in missing)])
        return Check("packages", "packages", FAIL, f"{shown}; missing: {what}",
                     "reinstall mlx-stack the way it was installed (`uv tool install --reinstall ...`, "
                     "`pipx reinstall mlx-stack`, `make install`): it brings them all", data)
    off = [f"{n} {versions[n]} (wants {required[n]})" for n in names
           if required.get(n) and not satisfies(str(versions[n]), required[n])]
    if versions["mlx"] != versions[backend]:
        off.append(f"{backend} {versions[backend]} differs from mlx {versions['mlx']}")
    if off:
        return Check("packages", "packages", WARN, f"{shown}; outside the tested range: " + ", ".join(off),
                     "reinstall mlx-stack to get the tested versions", data)
    return Check("packages", "packages", PASS, shown, None, data)


def mlx_backend(platform: str, info: Mapping[str, object]) -> Check:
    """Can MLX run here: Metal on macOS, the CPU backend elsewhere."""
    data = dict(info)
    if not info.get("imported"):
        fix = ("install the Metal build: `pip install 'mlx>=0.32'` in this environment"
               if platform == "darwin" else "install the CPU build: `pip install 'mlx[cpu]>=0.32'`")
        return Check("mlx", "MLX", FAIL, f"MLX does not load: {info.get('error')}", fix, data)
    if info.get("error"):
        return Check("mlx", "MLX", FAIL, f"MLX loads but fails: {info.get('error')}",
                     "reinstall mlx in this environment", data)
    if platform == "darwin":
        if not info.get("metal"):
            return Check("mlx", "MLX", FAIL, "MLX loads, but Metal is not available to it",
                         "MLX needs macOS 14+ on Apple Silicon and a native arm64 Python", data)
        device_info = as_object(info.get("device_info")) or {}
        name = device_info.get("device_name") or "Apple GPU"
        device = info.get("default_device")
        return Check("mlx", "MLX", PASS, f"Metal available ({name}), default device {device}", None, data)
    return Check("mlx", "MLX", PASS, f"CPU backend, default device {info.get('default_device')}", None, data)


def disk(check_id: str, title: str, path: str, free: int | None, warn_below: int, fail_below: int) -> Check:
    data = {"path": path, "free_bytes": free}
    if free is None:
        return Check(check_id, title, WARN, f"{path}: free space unknown", None, data)
    detail = f"{_gb(free)} free at {path}"
    if free < fail_below:
        return Check(check_id, title, FAIL, detail,
                     f"free some space on that disk (at least {_gb(fail_below)})", data)
    if free < warn_below:
        return Check(check_id, title, WARN, detail, f"a large model needs more: keep {_gb(warn_below)} free",
                     data)
    return Check(check_id, title, PASS, detail, None, data)
