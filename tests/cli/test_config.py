from __future__ import annotations

import json
import os
import stat

import pytest
import yaml

from mlx_stack.paths import Paths


def test_version_and_help(run):
    r = run("--version")
    assert r.exit_code == 0
    assert r.stdout.startswith("mlx-stack ")
    r = run("--help")
    assert r.exit_code == 0
    assert "config" in r.stdout


def test_list_shows_every_key_with_defaults(run):
    r = run("config", "list", "--json")
    assert r.exit_code == 0, r.stderr
    rows = {row["key"]: row for row in json.loads(r.stdout)}
    assert set(rows) == {
        "openrouter-key", "default-quant", "memory-budget-pct", "litellm-port",
        "model-dir", "auto-health-check", "log-max-size-mb", "log-max-files", "log-prompts",
        "cluster-ssh-timeout",
    }
    assert rows["litellm-port"] == {
        "key": "litellm-port", "value": 4000, "default": 4000, "source": "default"
    }
    assert rows["memory-budget-pct"]["value"] == 40
    assert rows["default-quant"]["value"] == "int4"
    r = run("config", "list")
    assert r.exit_code == 0
    assert "memory-budget-pct" in r.stdout and "default" in r.stdout


def test_set_get_roundtrip_and_source(run, isolated_home: Paths):
    assert run("config", "set", "litellm-port", "4100").exit_code == 0
    r = run("config", "get", "litellm-port")
    assert r.stdout.strip() == "4100"
    r = run("config", "get", "litellm-port", "--json")
    assert json.loads(r.stdout)["source"] == "config.yaml"
    assert yaml.safe_load(isolated_home.config_file.read_text()) == {"litellm-port": 4100}
    assert run("config", "set", "auto-health-check", "no").exit_code == 0
    assert run("config", "get", "auto-health-check").stdout.strip() == "false"
    assert run("config", "unset", "litellm-port").exit_code == 0
    assert run("config", "get", "litellm-port").stdout.strip() == "4000"


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("memory-budget-pct", "0", "1 to 100"),
        ("memory-budget-pct", "101", "1 to 100"),
        ("memory-budget-pct", "abc", "1 to 100"),
        ("litellm-port", "80", "1024 to 65535"),
        ("litellm-port", "70000", "1024 to 65535"),
        ("default-quant", "q4", "int4, int6, int8, bf16"),
        ("auto-health-check", "maybe", "true or false"),
        ("log-max-files", "-1", "1 to 100"),
        ("log-max-size-mb", "1.5", "1 to 10000"),
    ],
)
def test_bad_values_are_one_line_errors(run, isolated_home: Paths, key, value, allowed):
    r = run("config", "set", "--", key, value)  # `--` lets "-1" through as a value
    assert r.exit_code == 2
    first = r.stderr.splitlines()[0]
    assert key in first and repr(value) in first and allowed in first
    assert "Traceback" not in r.stderr
    assert not isolated_home.config_file.exists()


def test_unknown_key(run):
    r = run("config", "set", "no-such-key", "1")
    assert r.exit_code == 4
    assert "unknown config key 'no-such-key'" in r.stderr
    assert "litellm-port" in r.stderr  # the hint lists the known keys


def test_secret_from_stdin_is_private_and_masked(run, isolated_home: Paths):
    key = "sk-or-v1-0123456789abcdefSECRET"
    r = run("config", "set", "openrouter-key", "-", input=key + "\n")
    assert r.exit_code == 0, r.stderr
    assert key not in r.stdout + r.stderr
    stored = isolated_home.secrets_dir / "openrouter-key"
    assert stored.read_text().strip() == key
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(isolated_home.secrets_dir).st_mode) == 0o700
    for args in (("config", "list"), ("config", "list", "--json"), ("config", "get", "openrouter-key")):
        out = run(*args)
        assert key not in out.stdout + out.stderr
        assert "SECRET"[-4:] in out.stdout or "CRET" in out.stdout
    # the secret is never written into config.yaml
    assert not isolated_home.config_file.exists() or key not in isolated_home.config_file.read_text()


def test_set_without_value_on_a_terminal_is_an_error(run):
    r = run("config", "set", "openrouter-key", input="")
    assert r.exit_code == 2


def test_corrupt_config_names_file_and_line_and_is_kept(run, isolated_home: Paths):
    isolated_home.home.mkdir(parents=True)
    bad = "litellm-port: 4000\ndefault-quant: [int4\n"
    isolated_home.config_file.write_text(bad)
    r = run("config", "list")
    assert r.exit_code == 3
    assert str(isolated_home.config_file) in r.stderr and "line" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("config", "set", "litellm-port", "4001")
    assert r.exit_code == 3
    assert isolated_home.config_file.read_text() == bad  # never overwritten silently


def test_invalid_value_inside_file(run, isolated_home: Paths):
    isolated_home.home.mkdir(parents=True)
    isolated_home.config_file.write_text("memory-budget-pct: 500\n")
    r = run("config", "get", "memory-budget-pct")
    assert r.exit_code == 3
    assert "memory-budget-pct" in r.stderr and "500" in r.stderr


def test_reset_needs_yes(run, isolated_home: Paths):
    run("config", "set", "litellm-port", "4100")
    r = run("config", "reset")
    assert r.exit_code == 2 and "--yes" in r.stderr
    assert run("config", "reset", "--yes").exit_code == 0
    assert run("config", "get", "litellm-port").stdout.strip() == "4000"
    # reset also recovers from a corrupt file
    isolated_home.config_file.write_text("{{{\n")
    assert run("config", "reset", "--yes").exit_code == 0
