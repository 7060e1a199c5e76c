"""`mlx-stack connect`: each client's file merged (not overwritten), backups, the key
masked, --print writes nothing, bad files refused; `doctor` reads the result back."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import stack_store
from mlx_stack.system import ports, secrets

KEY = "sk-mlxstack-connect-test-0123456789abcdef"


@pytest.fixture
def user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated_home: Paths) -> Path:
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("CODEX_HOME", "CLAUDE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    stack_store.save(isolated_home, Stack(
        (Tier("standard", "org/big", "/models/big", ports.free_port(), context_window=65536),
         Tier("fast", "org/small", "/models/small", ports.free_port(), context_window=8192)),
        ("standard", "fast"), Gateway("127.0.0.1", 4123)))
    secrets.write_secret(isolated_home, secrets.GATEWAY_KEY, KEY)
    return home


def test_claude_settings_merged_with_a_backup(run, user: Path) -> None:
    settings = user / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"model": "opus", "env": {"FOO": "1"}}))
    r = run("connect", "claude")
    assert r.exit_code == 0, r.stderr
    assert KEY not in r.stdout + r.stderr
    data = json.loads(settings.read_text())
    assert data["model"] == "opus" and data["env"]["FOO"] == "1"
    assert data["env"]["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:4123"
    assert data["env"]["ANTHROPIC_AUTH_TOKEN"] == KEY
    assert settings.stat().st_mode & 0o777 == 0o600  # it holds the key
    backup = settings.with_name("settings.json.mlx-stack.bak")
    assert json.loads(backup.read_text()) == {"model": "opus", "env": {"FOO": "1"}}
    r = run("connect", "claude")
    assert r.exit_code == 0 and "already points at this stack" in r.stderr


def test_codex_provider_and_profile(run, user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    codex_home = user / "codex-elsewhere"
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    codex_home.mkdir()
    (codex_home / "config.toml").write_text('# mine\nmodel = "o3"\n\n[tui]\nnotifications = true\n')
    r = run("connect", "codex")
    assert r.exit_code == 0, r.stderr
    assert KEY not in r.stdout + r.stderr and 'export MLX_STACK_API_KEY="$(cat ' in r.stderr
    text = (codex_home / "config.toml").read_text()
    assert text.startswith('# mine\nmodel = "o3"\n\n[tui]\nnotifications = true\n')
    provider = tomllib.loads(text)["model_providers"]["mlx-stack"]
    assert provider["base_url"] == "http://127.0.0.1:4123/v1" and provider["wire_api"] == "responses"
    profile = tomllib.loads((codex_home / "mlx-stack.config.toml").read_text())
    assert profile == {"model_provider": "mlx-stack", "model": "gpt-5-codex"}
    r = run("connect", "codex", "--show-key")
    assert KEY in r.stderr


def test_opencode_provider(run, user: Path) -> None:
    r = run("connect", "opencode")
    assert r.exit_code == 0, r.stderr
    data = json.loads((user / ".config" / "opencode" / "opencode.json").read_text())
    ours = data["provider"]["mlx-stack"]
    assert ours["options"]["baseURL"] == "http://127.0.0.1:4123/v1"
    assert ours["options"]["apiKey"].startswith("{file:") and KEY not in json.dumps(data)
    assert set(ours["models"]) == {"standard", "fast", "auto"}


def test_print_writes_nothing(run, user: Path) -> None:
    for client in ("claude", "codex", "opencode"):
        r = run("connect", client, "--print")
        assert r.exit_code == 0, r.stderr
        assert KEY not in r.stdout and "127.0.0.1:4123" in r.stdout
    assert KEY in run("connect", "claude", "--print", "--show-key").stdout
    assert not any(user.iterdir())
    data = json.loads(run("connect", "codex", "--print", "--json").stdout)
    assert data["written"] == [] and "[model_providers.mlx-stack]" in data["text"]


def test_bad_files_are_refused_and_left_alone(run, user: Path) -> None:
    settings = user / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text("{not json")
    r = run("connect", "claude")
    assert r.exit_code == 3 and "is not valid JSON" in r.stderr and "Traceback" not in r.stderr
    assert settings.read_text() == "{not json"
    assert not settings.with_name("settings.json.mlx-stack.bak").exists()
    toml = user / ".codex" / "config.toml"
    toml.parent.mkdir()
    toml.write_text("model = \n")
    r = run("connect", "codex")
    assert r.exit_code == 3 and "not valid TOML" in r.stderr
    assert run("connect", "cursor").exit_code == 2


def test_no_stack_yet(run, isolated_home: Paths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    r = run("connect", "claude")
    assert r.exit_code == 4 and "no stack configured" in r.stderr


def test_doctor_checks_connected_clients(run, user: Path) -> None:
    def clients() -> dict:
        r = run("doctor", "--json")
        return {c["id"]: c for c in json.loads(r.stdout)["checks"]}["agent-clients"]

    assert clients()["status"] == "SKIP"
    assert run("connect", "claude").exit_code == 0
    assert run("connect", "codex").exit_code == 0
    found = clients()
    assert found["status"] == "PASS" and found["detail"] == "claude, codex point at this stack"
    config = user / ".codex" / "config.toml"
    config.write_text(config.read_text().replace("4123", "4999"))
    found = clients()
    assert found["status"] == "WARN" and "codex" in found["detail"]
    assert found["fix"] == "mlx-stack connect codex"
    assert KEY not in json.dumps(found)
    assert os.environ["HOME"] == str(user)
