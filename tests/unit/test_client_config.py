"""core.client_config: merging this stack into the agents' own files, and reading it back."""

from __future__ import annotations

import json
import tomllib

import pytest

from mlx_stack.core import client_config as cc
from mlx_stack.core.doctor_stack import ClientFact, agent_clients

EP = cc.Endpoint("127.0.0.1", 4123)
KEY = "sk-mlxstack-secret"

CODEX_USER = """# my Codex settings
model = "o3"  # keep me

[model_providers.other]
base_url = "http://elsewhere/v1" # theirs

# notes about the tui
[tui]
notifications = true
"""


def test_endpoint_urls() -> None:
    assert (EP.root, EP.v1) == ("http://127.0.0.1:4123", "http://127.0.0.1:4123/v1")
    assert cc.Endpoint("0.0.0.0", 4000).root == "http://127.0.0.1:4000"  # listening everywhere: dial loopback


def test_claude_env_is_merged_not_overwritten() -> None:
    before = json.dumps({"model": "opus", "permissions": {"allow": ["Bash(ls)"]},
                         "env": {"FOO": "1", "ANTHROPIC_API_KEY": "sk-ant-theirs"}})
    data = json.loads(cc.merge_claude(before, EP, KEY, "settings.json"))
    assert data["model"] == "opus" and data["permissions"] == {"allow": ["Bash(ls)"]}
    assert data["env"] == {"FOO": "1", "ANTHROPIC_BASE_URL": EP.root, "ANTHROPIC_AUTH_TOKEN": KEY,
                           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                           "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "32000"}  # an API key would win: removed
    windowed = json.loads(cc.merge_claude(None, EP, KEY, "s", window=65536))
    assert windowed["env"]["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "16384"
    assert cc.max_output_tokens(2048) == 1024 and cc.max_output_tokens(1_000_000) == 32000
    assert json.loads(cc.merge_claude(None, EP, KEY, "s"))["env"]["ANTHROPIC_BASE_URL"] == EP.root
    for bad in ("{nope", "[1]", '{"env": 3}'):
        with pytest.raises(cc.ClientFileError):
            cc.merge_claude(bad, EP, KEY, "settings.json")


def test_codex_table_is_appended_then_replaced_in_place_keeping_every_other_line() -> None:
    once = cc.merge_codex(CODEX_USER, EP, "config.toml")
    assert once.startswith(CODEX_USER)  # every byte of the user's file kept
    doc = tomllib.loads(once)
    assert doc["model"] == "o3" and doc["model_providers"]["other"]["base_url"] == "http://elsewhere/v1"
    assert doc["model_providers"]["mlx-stack"] == {"name": "mlx-stack", "base_url": EP.v1,
                                                   "env_key": "MLX_STACK_API_KEY", "wire_api": "responses"}
    assert cc.merge_codex(once, EP, "config.toml") == once  # idempotent
    moved = cc.Endpoint("127.0.0.1", 5000)
    # ours in the middle: replaced where it is; the comment above the next table stays with it
    middle = CODEX_USER.replace("# notes about the tui", cc.codex_table(EP) + "\n# notes about the tui")
    again = cc.merge_codex(middle, moved, "config.toml")
    assert again == middle.replace(EP.v1, moved.v1)
    assert cc.codex_problem(tomllib.loads(again), moved) is None
    assert "base_url" in (cc.codex_problem(tomllib.loads(again), EP) or "")
    assert cc.merge_codex(None, EP, "c").startswith("[model_providers.mlx-stack]")


def test_codex_forms_it_must_not_edit_are_refused() -> None:
    inline = 'model_providers = { mlx-stack = { base_url = "http://x/v1" } }\n'
    with pytest.raises(cc.ClientFileError, match=r"not valid TOML|does not edit"):
        cc.merge_codex(inline, EP, "config.toml")
    with pytest.raises(cc.ClientFileError, match="not valid TOML"):
        cc.merge_codex("model = \n", EP, "config.toml")


def test_opencode_provider_merged() -> None:
    before = json.dumps({"theme": "dark", "provider": {"anthropic": {"options": {"baseURL": "x"}}}})
    windows = {"standard": 65536, "auto": None}
    data = json.loads(cc.merge_opencode(before, EP, "/keys/gateway-key", windows, "o"))
    assert data["theme"] == "dark" and "anthropic" in data["provider"]
    ours = data["provider"]["mlx-stack"]
    assert ours["npm"] == "@ai-sdk/openai-compatible"
    assert ours["options"] == {"baseURL": EP.v1, "apiKey": "{file:/keys/gateway-key}"}  # no key in the file
    assert ours["models"]["standard"]["limit"]["context"] == 65536 and "limit" not in ours["models"]["auto"]


def test_problem_and_is_connected() -> None:
    claude = cc.merge_claude(None, EP, KEY, "s")
    assert cc.is_connected("claude", claude) and cc.problem("claude", claude, EP, KEY, "s") is None
    assert "not this stack's key" in (cc.problem("claude", claude, EP, "sk-other", "s") or "")
    assert "this stack is" in (cc.problem("claude", claude, cc.Endpoint("127.0.0.1", 1), KEY, "s") or "")
    assert not cc.is_connected("claude", json.dumps({"env": {"ANTHROPIC_BASE_URL": "https://api.example"}}))
    assert not cc.is_connected("claude", "{broken")
    oc = cc.merge_opencode(None, EP, "/k", {}, "o")
    assert cc.is_connected("opencode", oc) and cc.problem("opencode", oc, EP, KEY, "o") is None
    assert "baseURL" in (cc.problem("opencode", oc, cc.Endpoint("127.0.0.1", 1), KEY, "o") or "")
    assert "not valid TOML" in (cc.problem("codex", "x = ", EP, KEY, "c") or "")


def test_doctor_judges_the_connected_clients() -> None:
    assert agent_clients([ClientFact("claude", "f", False)]).status == "SKIP"
    ok = agent_clients([ClientFact("claude", "f", True), ClientFact("codex", "g", False)])
    assert (ok.status, ok.detail) == ("PASS", "claude point at this stack")
    bad = agent_clients([ClientFact("codex", "g", True, "no [model_providers.mlx-stack] table")])
    assert bad.status == "WARN" and bad.fix == "mlx-stack connect codex" and "g" in bad.detail
