"""Read the model catalog's files; :mod:`mlx_stack.core.catalog` parses and validates them.

    load_catalog() -> Catalog    the catalog shipped in the wheel (package ``mlx_stack.catalog``),
                                 read and validated once per process
    load_dir(folder) -> Catalog  every ``*.yaml`` in a folder (tests, overrides)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from mlx_stack.core.catalog import Catalog, parse_catalog


def load_dir(folder: Path) -> Catalog:
    """Load and validate every ``*.yaml`` in ``folder``."""
    return parse_catalog((p.name, p.read_text()) for p in folder.glob("*.yaml"))


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The catalog shipped in the wheel (package ``mlx_stack.catalog``), validated once."""
    from importlib.resources import files

    root = files("mlx_stack.catalog")
    return parse_catalog((p.name, p.read_text()) for p in root.iterdir() if p.name.endswith(".yaml"))
