"""system.hub: the one place that reads the Hugging Face settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_stack.system import hub

_VARS = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "HF_HUB_OFFLINE",
         "TRANSFORMERS_OFFLINE")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in _VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    return monkeypatch


def test_cache_folders_follow_the_library_rules(env: pytest.MonkeyPatch, tmp_path: Path):
    user = tmp_path / "user"
    assert hub.home_dir() == user / ".cache" / "huggingface"
    assert hub.cache_dir() == user / ".cache" / "huggingface" / "hub"
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    env.setenv("HF_HOME", "~/hf")
    assert hub.home_dir() == user / "hf" and hub.cache_dir() == user / "hf" / "hub"
    env.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "legacy"))
    assert hub.cache_dir() == tmp_path / "legacy"
    env.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub.cache_dir() == tmp_path / "cache"
    env.setenv("HF_HUB_CACHE", "")  # empty counts as unset
    assert hub.cache_dir() == tmp_path / "legacy"


def test_offline_is_read_when_asked(env: pytest.MonkeyPatch):
    for value in ("1", "true", "YES", " on "):
        env.setenv("HF_HUB_OFFLINE", value)
        assert hub.offline()
    env.delenv("HF_HUB_OFFLINE")
    env.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hub.offline()


def test_service_env_names_the_cache_of_this_shell(env: pytest.MonkeyPatch, tmp_path: Path):
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.service_env() == {"HF_HOME": str(tmp_path / "xdg" / "huggingface")}
    env.setenv("HF_HUB_CACHE", "/models/hub")
    assert hub.service_env()["HF_HUB_CACHE"] == "/models/hub"
