"""Rendering the LaunchAgent plist and the systemd unit (pure)."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest

from mlx_stack.core import service_units
from mlx_stack.core.service_units import UnitSpec

SPEC = UnitSpec(
    program=("/opt/my env/.venv/bin/mlx-stack", "watch", "--standby"),
    home=Path("/Users/me/.mlx-stack"),
    env={"HF_HOME": "/Users/me/.cache/huggingface", "PATH": "/opt/my env/.venv/bin:/usr/bin:/bin"},
    stdout_log=Path("/Users/me/.mlx-stack/logs/watchdog.agent.log"),
)


def test_plist_has_what_launchd_needs() -> None:
    data = plistlib.loads(service_units.render_plist(SPEC))
    assert data["Label"] == "io.github.mlx-stack.watchdog"
    assert data["ProgramArguments"] == ["/opt/my env/.venv/bin/mlx-stack", "watch", "--standby"]
    assert data["RunAtLoad"] is True and data["KeepAlive"] is True
    assert data["ThrottleInterval"] == 10
    assert data["AbandonProcessGroup"] is True
    assert data["EnvironmentVariables"] == {
        "MLX_STACK_HOME": "/Users/me/.mlx-stack",
        "HF_HOME": "/Users/me/.cache/huggingface",
        "PATH": "/opt/my env/.venv/bin:/usr/bin:/bin",
    }
    log = "/Users/me/.mlx-stack/logs/watchdog.agent.log"
    assert data["StandardOutPath"] == data["StandardErrorPath"] == log


def test_plist_validation_rejects_a_relative_program() -> None:
    raw = plistlib.dumps({"Label": "x", "ProgramArguments": ["mlx-stack", "watch"]})
    with pytest.raises(ValueError, match="not an absolute path"):
        service_units.validate_plist(raw)
    with pytest.raises(ValueError, match="no Label"):
        service_units.validate_plist(plistlib.dumps({"ProgramArguments": ["/x"]}))


def test_special_characters_are_escaped_in_the_plist() -> None:
    spec = UnitSpec(program=("/a&b/<mlx>", "watch"), home=Path("/h"))
    raw = service_units.render_plist(spec)
    assert b"/a&amp;b/&lt;mlx&gt;" in raw
    assert plistlib.loads(raw)["ProgramArguments"][0] == "/a&b/<mlx>"


def test_systemd_unit() -> None:
    text = service_units.render_systemd(SPEC)
    assert "ExecStart='/opt/my env/.venv/bin/mlx-stack' watch --standby\n" in text
    assert "Restart=always\nRestartSec=10\nKillMode=process\n" in text
    assert 'Environment="MLX_STACK_HOME=/Users/me/.mlx-stack"' in text
    assert 'Environment="PATH=/opt/my env/.venv/bin:/usr/bin:/bin"' in text
    assert "StandardOutput=append:/Users/me/.mlx-stack/logs/watchdog.agent.log" in text
    assert text.endswith("[Install]\nWantedBy=default.target\n")


def test_systemd_specifiers_are_escaped() -> None:
    spec = UnitSpec(program=("/x/100%/mlx-stack", "watch"), home=Path("/h"), env={"A": 'q"%'})
    text = service_units.render_systemd(spec)
    assert "ExecStart=/x/100%%/mlx-stack watch" in text
    assert 'Environment="A=q\\"%%"' in text
