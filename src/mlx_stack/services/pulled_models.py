"""The record of models `pull` completed (``~/.mlx-stack/pulled.yaml``).

An entry is written only after every file of the model is on disk, atomically
and under a lock, so an interrupted or failed pull never leaves a model that
looks usable. Entries whose folder has since disappeared are skipped on read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlx_stack.json_types import JSON

from mlx_stack.core.yaml_text import parse_yaml
from mlx_stack.paths import Paths
from mlx_stack.system.fs import atomic_write, read_state_text
from mlx_stack.system.locks import file_lock

_PULLED_HINT = "delete the file and pull your models again (downloaded files are reused)"


@dataclass(frozen=True)
class PulledModel:
    model: str  # what the user asked for: a catalog id or the hub repo
    repo: str  # the hub repo the files came from
    revision: str  # the commit sha
    path: str  # the local folder vllm-mlx serves
    quant: str | None  # int4 / int8 / bf16, from the model's config.json (None if unknown)
    size_bytes: int

    def as_dict(self) -> dict[str, JSON]:
        return asdict(self)


def _read(p: Paths) -> list[PulledModel]:
    text = read_state_text(p.pulled_file, _PULLED_HINT)
    if text is None:
        return []
    data = parse_yaml(text, str(p.pulled_file), hint=_PULLED_HINT) or {}
    out = []
    for raw in (data.get("models") or []) if isinstance(data, dict) else []:
        try:
            out.append(PulledModel(**{k: raw.get(k) for k in PulledModel.__dataclass_fields__}))
        except (TypeError, AttributeError):
            continue
    return out


def load(p: Paths) -> list[PulledModel]:
    """Every recorded model whose folder is still there."""
    return [m for m in _read(p) if Path(m.path, "config.json").is_file()]


def find(p: Paths, spec: str) -> PulledModel | None:
    """The most recent pull of ``spec`` (a catalog id or a hub repo), if still on disk."""
    for m in reversed(load(p)):
        if spec in (m.model, m.repo):
            return m
    return None


def record(p: Paths, model: PulledModel) -> None:
    """Add or replace the entry for ``model.repo`` (atomic, under the lock)."""
    import yaml

    with file_lock(p.pulled_lock_file, what="pull"):
        entries = [m for m in _read(p) if m.repo != model.repo]
        entries.append(model)
        text = "# models completed by `mlx-stack pull` (written by mlx-stack)\n"
        text += yaml.safe_dump({"models": [m.as_dict() for m in entries]}, sort_keys=False)
        atomic_write(p.pulled_file, text)
