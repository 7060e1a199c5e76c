"""pull's decisions against fakes: error mapping, the disk check, the record of pulled models."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from mlx_stack.core.units import format_bytes
from mlx_stack.errors import ConflictError, MlxStackError, NetworkError, NotFoundError, UsageError
from mlx_stack.paths import Paths
from mlx_stack.services import pull, pulled_models
from mlx_stack.services.local_models import read_model_folder
from mlx_stack.services.pulled_models import PulledModel
from mlx_stack.system import hub


def _response(status: int, code: str | None = None) -> httpx.Response:
    headers = {"X-Error-Code": code} if code else {}
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://hub/x"))


def test_translate_maps_library_errors_to_exit_codes() -> None:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    gated = hub.translate(GatedRepoError("x", response=_response(401, "GatedRepo")), "org/m")
    assert isinstance(gated, hub.GatedError) and gated.exit_code == 6
    assert "accept its license" in gated.message and "HF_TOKEN" in gated.message
    missing = hub.translate(RepositoryNotFoundError("x", response=_response(401, "RepoNotFound")), "org/m")
    assert isinstance(missing, NotFoundError) and missing.exit_code == 4
    down = hub.translate(httpx.ConnectError("refused"), "org/m")
    assert isinstance(down, NetworkError) and "cannot reach the Hugging Face Hub" in down.message
    assert isinstance(hub.translate(LocalEntryNotFoundError("gone"), "org/m"), NetworkError)
    bad_token = hub.translate(HfHubHTTPError("x", response=_response(401)), "org/m")
    assert isinstance(bad_token, NetworkError) and "refused the token" in bad_token.message
    server = hub.translate(HfHubHTTPError("x", response=_response(503)), "org/m")
    assert isinstance(server, NetworkError) and "503" in server.message
    bug = ValueError("a bug")
    assert hub.translate(bug, "org/m") is bug  # unknown exceptions stay bugs (exit 1)


@pytest.mark.parametrize("repo", ["org/", "/name", "org/na me", "a/b/c", "org/..", "-org/x"])
def test_bad_repo_ids_are_usage_errors(repo: str) -> None:
    with pytest.raises(UsageError):
        pull.resolve(repo, None)


def test_sizes_in_pull_messages() -> None:
    # pull's messages use core.units.format_bytes: binary units, as memory is counted
    # (README: 1 GB = 1024^3 bytes)
    assert format_bytes(pull.HEADROOM) == "512 MB"
    assert format_bytes(1500 * 1024**4) == "1500.0 TB"


def _remote(sizes: dict[str, int], gated: bool = False) -> hub.RemoteRepo:
    files = tuple(hub.RemoteFile(n, s, f"blob-{n}") for n, s in sizes.items())
    return hub.RemoteRepo("org/m", "c" * 40, gated, files)


def test_disk_check_counts_only_what_is_missing(monkeypatch: pytest.MonkeyPatch, isolated_home: Paths,
                                                tmp_path: Path) -> None:
    remote = _remote({"config.json": 100, "model.safetensors": 4 * 1024**3})
    monkeypatch.setattr(hub, "fetch_repo", lambda *a, **k: remote)
    monkeypatch.setattr(hub, "token", lambda: None)
    monkeypatch.setattr(hub, "cache_dir", lambda: tmp_path / "cache")
    target = pull.resolve("org/m", None)

    with pytest.raises(ConflictError) as err:
        pull.plan(isolated_home, target, disk_free=lambda _: 3 * 1024**3)
    assert err.value.exit_code == 5
    assert "needs 4.0 GB (+512 MB headroom)" in err.value.message and "3.0 GB free" in err.value.message

    # The big blob is already in the cache: only 100 bytes to fetch, so it fits.
    blobs = hub.storage_folder("org/m", tmp_path / "cache") / "blobs"
    blobs.mkdir(parents=True)
    with open(blobs / "blob-model.safetensors", "wb") as fh:
        fh.truncate(4 * 1024**3)  # sparse: costs no real disk
    plan = pull.plan(isolated_home, target, disk_free=lambda _: 3 * 1024**3)
    assert plan.present == 4 * 1024**3 and plan.to_fetch == 100


def test_gated_without_token_fails_before_any_download(monkeypatch: pytest.MonkeyPatch,
                                                       isolated_home: Paths) -> None:
    monkeypatch.setattr(hub, "fetch_repo", lambda *a, **k: _remote({"config.json": 1}, gated=True))
    monkeypatch.setattr(hub, "token", lambda: None)
    monkeypatch.setattr(hub, "download", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(hub.GatedError) as err:
        pull.pull(isolated_home, "org/m")
    assert err.value.exit_code == 6


def test_offline_falls_back_to_a_complete_copy_only(monkeypatch: pytest.MonkeyPatch, isolated_home: Paths,
                                                    tmp_path: Path) -> None:
    def unreachable(*a: object, **k: object) -> hub.RemoteRepo:
        raise NetworkError("cannot reach the Hugging Face Hub")

    monkeypatch.setattr(hub, "fetch_repo", unreachable)
    monkeypatch.setattr(hub, "token", lambda: None)
    monkeypatch.setattr(hub, "cached_snapshot", lambda *a, **k: None)
    with pytest.raises(NetworkError):
        pull.pull(isolated_home, "org/m")
    assert pulled_models.load(isolated_home) == []

    folder = tmp_path / "snap" / ("d" * 40)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"quantization": {"bits": 8}}))
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    monkeypatch.setattr(hub, "cached_snapshot", lambda *a, **k: folder)
    seen: list[str] = []
    pulled = pull.pull(isolated_home, "org/m", on_offline=seen.append)
    model = pulled.model
    assert pulled.downloaded_bytes == 0 and pulled.as_dict() == {**model.as_dict(), "downloaded_bytes": 0}
    assert model.quant == "int8" and model.revision == "d" * 40 and seen
    assert pulled_models.find(isolated_home, "org/m") == model


def test_record_replaces_by_repo_and_skips_vanished_folders(isolated_home: Paths, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "config.json").write_text("{}")
    pulled_models.record(isolated_home, PulledModel("qwen", "org/q", "1" * 40, str(a), "int4", 1))
    pulled_models.record(isolated_home, PulledModel("org/r", "org/r", "2" * 40, str(b), None, 2))
    pulled_models.record(isolated_home, PulledModel("qwen", "org/q", "3" * 40, str(a), "int4", 3))
    assert [m.revision for m in pulled_models.load(isolated_home)] == ["2" * 40, "3" * 40]
    found = pulled_models.find(isolated_home, "qwen")
    assert found is not None and found.repo == "org/q"
    (b / "config.json").unlink()
    assert pulled_models.find(isolated_home, "org/r") is None


def test_corrupt_record_is_a_state_error(isolated_home: Paths) -> None:
    isolated_home.home.mkdir(parents=True, exist_ok=True)
    isolated_home.pulled_file.write_text("models: [\n")
    with pytest.raises(MlxStackError) as err:
        pulled_models.load(isolated_home)
    assert err.value.exit_code == 3


def test_a_half_downloaded_sharded_model_is_not_listed(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"x")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert read_model_folder(folder) is None
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"y")
    assert read_model_folder(folder) is not None


def test_catalog_ids_resolve_to_the_repo_of_the_quant() -> None:
    t = pull.resolve("qwen3-8b", None, "int4")
    assert (t.model, t.repo, t.quant) == ("qwen3-8b", "mlx-community/Qwen3-8B-4bit", "int4")
    assert pull.resolve("qwen3-8b", "int8").repo == "mlx-community/Qwen3-8B-8bit"
    with pytest.raises(NotFoundError) as err:
        pull.resolve("qwen3-8b", "bf16")
    assert "no bf16 build" in err.value.message and "int4, int8" in (err.value.hint or "")
    # Only the configured default is missing: fall back to what the catalog ships.
    assert pull.resolve("qwen3-8b", None, "bf16").quant == "int4"
    # A hub repo the catalog knows carries the catalog's id and facts.
    known = pull.resolve("mlx-community/Qwen3-8B-8bit")
    assert (known.model, known.quant, known.entry is not None) == ("qwen3-8b", "int8", True)
    assert pull.resolve("org/unknown-model").entry is None



def test_partial_files_left_by_a_killed_pull_are_swept_live_ones_kept(tmp_path: Path) -> None:
    import os
    import time

    remote = _remote({"model.safetensors": 100})
    blobs = hub.storage_folder("org/m", tmp_path) / "blobs"
    blobs.mkdir(parents=True)
    stale, live = blobs / "blob-model.safetensors.1234abcd.incomplete", blobs / "x.5678abcd.incomplete"
    stale.write_bytes(b"x" * 40)
    live.write_bytes(b"y" * 30)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert hub._bytes_on_disk(remote, cache=tmp_path, local_dir=None) == 70
    hub._sweep_stale_partials(remote, cache=tmp_path, local_dir=None)
    assert not stale.exists() and live.exists()
    assert hub._bytes_on_disk(remote, cache=tmp_path, local_dir=None) == 30
