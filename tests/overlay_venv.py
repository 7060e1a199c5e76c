"""A copy of this virtual environment's layout whose bin/ holds fake server commands.

The watchdog and `up` run `<bin of sys.executable>/vllm-mlx`; a watchdog started
with the overlay's python therefore runs the fake instead, while mlx-stack itself,
its interpreter and its site-packages are the real ones.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def make_overlay(root: Path, vllm_mlx_script: str) -> Path:
    """Create the overlay in ``root`` with ``bin/vllm-mlx`` = the script; return its python."""
    venv = Path(sys.prefix)
    (root / "bin").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text((venv / "pyvenv.cfg").read_text())
    (root / "lib").symlink_to(venv / "lib")
    (root / "bin" / "python").symlink_to(os.path.realpath(sys.executable))
    fake = root / "bin" / "vllm-mlx"
    fake.write_text(vllm_mlx_script)
    fake.chmod(0o755)
    return root / "bin" / "python"
