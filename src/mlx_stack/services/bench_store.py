"""Saved benchmark results: ``benchmarks/<profile>/<model>.json``, one file per model.

``bench --save`` writes a result atomically (a chat model's, or an embedding tier's with
``kind: embedding``); the recommender reads them back with
:func:`load_saved` for the hardware profile it plans for. A file is trusted only if
it passes :func:`mlx_stack.core.bench_result.parse_saved` (right schema and profile, every
figure present and positive: a saved memory of zero is rejected); rejected files are
reported by :func:`scan_saved` and never used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlx_stack.core import bench_result as results
from mlx_stack.errors import UsageError
from mlx_stack.paths import Paths
from mlx_stack.system.fs import atomic_write

if TYPE_CHECKING:
    from mlx_stack.core.hardware import HardwareProfile
    from mlx_stack.json_types import JSONObject


@dataclass(frozen=True)
class Rejected:
    path: Path
    reason: str


def _key(profile: str | HardwareProfile) -> str:
    """A profile key, from the key itself or a HardwareProfile."""
    return profile if isinstance(profile, str) else profile.profile_key


def profile_dir(p: Paths, profile: str | HardwareProfile) -> Path:
    return p.benchmarks_dir / results.slug(_key(profile))


def result_path(p: Paths, profile: str, model: str) -> Path:
    return profile_dir(p, profile) / f"{results.slug(model)}.json"


def save(p: Paths, result: results.BenchResult) -> Path:
    """Store ``result`` for its profile and model, replacing an older one (atomic write)."""
    data = result.to_dict()
    try:
        results.parse_saved(data, result.profile)
    except ValueError as exc:
        raise UsageError(
            f"this result cannot be saved: {exc}",
            hint="the recommender only trusts complete measurements; "
                 "peak memory needs the server's process (a tier started by `mlx-stack up`)",
        ) from None
    path = result_path(p, result.profile, result.model)
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    return path


Saved = results.SavedMeasurement | results.SavedEmbedding


def save_embedding(p: Paths, data: JSONObject) -> Path:
    """Store an embedding tier's bench (:func:`results.embedding_result`), like :func:`save`."""
    profile, model = str(data.get("profile")), str(data.get("model"))
    try:
        results.parse_saved(data, profile)
    except ValueError as exc:
        raise UsageError(f"this result cannot be saved: {exc}", hint="peak memory needs the tier's "
                         "process (a tier started by `mlx-stack up`)") from None
    path = result_path(p, profile, model)
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    return path


def scan_saved(p: Paths, profile: str | HardwareProfile
               ) -> tuple[dict[str, Saved], list[Rejected]]:
    """Every usable saved measurement for ``profile`` (a HardwareProfile or its key) by model,
    and the files rejected."""
    profile = _key(profile)
    found: dict[str, Saved] = {}
    rejected: list[Rejected] = []
    folder = profile_dir(p, profile)
    if not folder.is_dir():
        return found, rejected
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            rejected.append(Rejected(path, f"unreadable: {type(exc).__name__}"))
            continue
        try:
            saved = results.parse_saved(data, profile)
        except ValueError as exc:
            rejected.append(Rejected(path, str(exc)))
            continue
        previous = found.get(saved.model)
        if previous is None or saved.measured_at > previous.measured_at:
            found[saved.model] = saved
    return found, rejected


def load_saved(p: Paths, profile: str | HardwareProfile) -> dict[str, Saved]:
    """Usable saved measurements for ``profile`` (a HardwareProfile or its key), by model id:
    pass it to ``scoring.recommend(..., saved=...)``."""
    return scan_saved(p, profile)[0]
