"""Folders mlx-stack creates are private (0700): logs and state may hold private text.

Standard library only: the log writer imports it.
"""

from __future__ import annotations

import os
from pathlib import Path


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parents, each new one with mode 0700.

    (``os.makedirs(mode=...)`` applies the mode to the last folder only.) Folders that
    exist already are left as they are.
    """
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue
    if missing and not path.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(path))
