from __future__ import annotations

import json
import os
from pathlib import Path

from mlx_stack.paths import Paths
from mlx_stack.services.local_models import hf_cache_dir, list_local_models, quantization_of


def _model(folder: Path, config: dict, weights: bytes = b"x" * 100) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def _cached_repo(cache: Path, repo_id: str, config: dict) -> None:
    """Lay out a repo the way huggingface_hub does: blobs + snapshot symlinks + refs."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    blobs, snap = repo / "blobs", repo / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    for name, data in (("config.json", json.dumps(config).encode()), ("model.safetensors", b"w" * 1000)):
        blob = blobs / f"blob-{name}"
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snap), snap / name)


def test_quantization_from_config():
    assert quantization_of({"quantization": {"bits": 4, "group_size": 64}}) == "int4"
    assert quantization_of({"quantization_config": {"bits": 8}}) == "int8"
    assert quantization_of({"torch_dtype": "bfloat16"}) == "bf16"
    assert quantization_of({"text_config": {"dtype": "float16"}}) == "fp16"
    assert quantization_of({}) is None
    assert quantization_of(["not", "a", "mapping"]) is None
    assert quantization_of({"quantization": {"bits": "4"}, "torch_dtype": "bfloat16"}) == "bf16"


def test_finds_hf_cache_model_dir_and_demo(tmp_path: Path, isolated_home: Paths, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    _cached_repo(cache, "mlx-community/Qwen3-8B-4bit", {"quantization": {"bits": 4}})
    _cached_repo(cache, "someone/not-a-model", {"quantization": {"bits": 4}})
    # a dataset-like repo without weights is skipped
    (cache / "models--someone--not-a-model" / "snapshots" / "abc123" / "model.safetensors").unlink()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert hf_cache_dir() == cache
    mine = _model(tmp_path / "models" / "org" / "my-model", {"torch_dtype": "bfloat16"})
    _model(isolated_home.models_dir / "demo-fast", {"quantization": {"bits": 8}})
    (tmp_path / "models" / "empty").mkdir()

    found = list_local_models(isolated_home, model_dirs=[tmp_path / "models"])
    by_source = {m.source: m for m in found}
    assert [m.source for m in found] == ["hf-cache", "model-dir", "demo"]
    hf = by_source["hf-cache"]
    assert hf.id == "mlx-community/Qwen3-8B-4bit" and hf.quantization == "int4"
    assert hf.size_bytes > 1000
    assert by_source["model-dir"].path == mine and by_source["model-dir"].quantization == "bf16"
    assert by_source["demo"].quantization == "int8"
    assert set(found[0].as_dict()) == {"id", "path", "size_bytes", "quantization", "source"}


def test_missing_cache_and_config_model_dir(tmp_path: Path, isolated_home: Paths, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "nowhere"))
    assert list_local_models(isolated_home) == []
    from mlx_stack.services import config

    _model(tmp_path / "md" / "m1", {"quantization": {"bits": 4}})
    config.set_value(isolated_home, "model-dir", str(tmp_path / "md"))
    found = list_local_models(isolated_home)
    assert [(m.source, m.path.name) for m in found] == [("model-dir", "m1")]
