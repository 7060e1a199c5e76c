"""Models already on this machine: the Hugging Face cache, `model-dir` and the demo models.

Public API (other commands build on it; keep it stable):

    list_local_models(p, *, model_dirs=None, hf_cache_dir_override=None, include_hf_cache=True)
        -> list[LocalModel]     (LocalModel: id, path, size_bytes, quantization, source)

A model is a folder holding ``config.json`` and at least one ``*.safetensors`` file
(what mlx-lm and vllm-mlx load). Nothing is downloaded: the Hugging Face cache is read
by :func:`mlx_stack.system.hub.cached_models` (``huggingface_hub``'s cache scanner).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mlx_stack.json_types import as_object
from mlx_stack.paths import Paths

SOURCES = ("hf-cache", "model-dir", "demo")


@dataclass(frozen=True)
class LocalModel:
    """One model found on disk.

    ``id`` is the repo id for the Hugging Face cache (``mlx-community/Qwen3-8B-4bit``)
    and the folder path otherwise; ``path`` is always the folder to serve from.
    ``quantization`` is ``int4``/``int8``/``int6``/``int3``/``bf16``/``fp16``/``fp32``
    when ``config.json`` says so, else ``None``.
    """

    id: str
    path: Path
    size_bytes: int
    quantization: str | None
    source: str  # one of SOURCES

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "quantization": self.quantization,
            "source": self.source,
        }


def hf_cache_dir() -> Path:
    """The hub cache folder (:func:`mlx_stack.system.hub.cache_dir`: HF_HUB_CACHE, then
    HF_HOME, then XDG_CACHE_HOME)."""
    from mlx_stack.system import hub

    return hub.cache_dir()


def quantization_of(config: object) -> str | None:
    """``int4``/``int8``/... from an MLX ``config.json`` (as parsed); the dtype when
    unquantized; None when it says neither (or is not a mapping)."""
    data = as_object(config)
    if data is None:
        return None
    quant = as_object(data.get("quantization") or data.get("quantization_config"))
    bits = None if quant is None else quant.get("bits")
    if isinstance(bits, int):
        return f"int{bits}"
    text_config = as_object(data.get("text_config"))
    dtype = data.get("torch_dtype") or data.get("dtype")
    if dtype is None and text_config is not None:
        dtype = text_config.get("torch_dtype") or text_config.get("dtype")
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(str(dtype))


def read_model_folder(folder: Path) -> tuple[int, str | None] | None:
    """(size in bytes, quantization) when ``folder`` is a loadable model, else None."""
    config_file = folder / "config.json"
    try:
        if not config_file.is_file() or not any(folder.glob("*.safetensors")):
            return None
        config: object = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return None
    if as_object(config) is None:
        return None
    if _missing_shards(folder):
        return None  # half a download (an interrupted pull): not loadable yet
    size = 0
    try:
        for f in folder.rglob("*"):
            try:
                if f.is_file():
                    size += f.stat().st_size  # follows the cache's symlinks to blobs
            except OSError:
                continue
    except OSError:  # an unreadable subfolder: count what we could see
        pass
    return size, quantization_of(config)


def _missing_shards(folder: Path) -> bool:
    """True when the safetensors index names a shard that is not on disk."""
    index = folder / "model.safetensors.index.json"
    try:
        data = as_object(json.loads(index.read_text()))
    except (OSError, ValueError):
        return False
    weight_map = as_object(data.get("weight_map")) if data is not None else None
    shards = {v for v in (weight_map or {}).values() if isinstance(v, str)}
    return any(not (folder / shard).is_file() for shard in shards)


def _scan_hf_cache(cache_dir: Path) -> list[LocalModel]:
    from mlx_stack.system import hub

    found: list[LocalModel] = []
    for cached in hub.cached_models(cache_dir):
        seen = read_model_folder(cached.snapshot)
        if seen is not None:
            found.append(LocalModel(cached.repo_id, cached.snapshot, seen[0], seen[1], "hf-cache"))
    return found


def _scan_folder(root: Path, source: str) -> list[LocalModel]:
    """A model folder itself, or its children (one or two levels: ``org/name``)."""
    found: list[LocalModel] = []
    candidates: Iterable[Path] = [root]
    if _is_dir(root):
        children = [c for c in _subfolders(root) if not c.name.startswith(".")]
        grandchildren = [g for c in children for g in _subfolders(c)]
        candidates = [root, *children, *grandchildren]
    for folder in candidates:
        seen = read_model_folder(folder)
        if seen is not None:
            found.append(LocalModel(str(folder), folder, seen[0], seen[1], source))
    return found


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _subfolders(folder: Path) -> list[Path]:
    """The readable subfolders of ``folder``; an unreadable one (or folder) is skipped."""
    try:
        return sorted(c for c in folder.iterdir() if _is_dir(c))
    except OSError:
        return []


def _pulled_repos(p: Paths) -> dict[Path, str]:
    """Folder -> hub repo, for the models `pull` recorded (added by pull, issue 5)."""
    from mlx_stack.errors import MlxStackError
    from mlx_stack.services import pulled_models

    try:
        return {Path(m.path).resolve(): m.repo for m in pulled_models.load(p)}
    except MlxStackError:
        return {}


def list_local_models(
    p: Paths,
    *,
    model_dirs: Sequence[Path] | None = None,
    hf_cache_dir_override: Path | None = None,
    include_hf_cache: bool = True,
) -> list[LocalModel]:
    """Every model on disk: the HF cache, then ``model-dir`` (from config unless
    ``model_dirs`` is given), then mlx-stack's own demo models (``p.models_dir``)."""
    models: list[LocalModel] = []
    if include_hf_cache:
        models += _scan_hf_cache(hf_cache_dir_override or hf_cache_dir())
    if model_dirs is None:
        from mlx_stack.services import config

        configured = config.load(p).get("model-dir")
        model_dirs = [Path(configured).expanduser()] if configured else []
    pulled = _pulled_repos(p)
    for d in model_dirs:
        # A folder `pull` filled (model-dir/org--name) is named by its repo.
        models += [replace(m, id=pulled.get(m.path.resolve(), m.id)) for m in _scan_folder(d, "model-dir")]
    models += _scan_folder(p.models_dir, "demo")
    unique: dict[Path, LocalModel] = {}
    for m in models:
        unique.setdefault(m.path.resolve(), m)
    return list(unique.values())
