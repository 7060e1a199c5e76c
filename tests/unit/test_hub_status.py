"""system/hub.py's answers for `models --available` and the cache scan, as plain values."""

from __future__ import annotations

import pytest

from mlx_stack.system import hub
from tests.fakehub import FakeHub, FakeRepo


def test_repo_status_against_a_stand_in_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    with FakeHub() as fake:
        fake.repos["org/open"] = FakeRepo(files={"config.json": b"{}"})
        fake.repos["org/closed"] = FakeRepo(files={"config.json": b"{}"}, gated=True)
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)  # HfApi reads it when built
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the test session sets it
        assert hub.repo_status("org/open") == ("available", None)
        assert hub.repo_status("org/closed") == ("gated", None)
        assert hub.repo_status("org/nothing") == ("missing", None)


def test_cached_models_without_a_cache(tmp_path) -> None:
    assert hub.cached_models(tmp_path / "absent") == []
    (tmp_path / "file").write_text("not a folder")
    assert hub.cached_models(tmp_path / "file") == []
