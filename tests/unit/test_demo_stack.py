from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mlx_stack.paths import Paths
from mlx_stack.services import config, demo_models, demo_stack, stack_store


@pytest.fixture(autouse=True)
def quick_models(monkeypatch: pytest.MonkeyPatch) -> None:
    # The builder has its own tests; here only the stack written around it matters.
    def build(dest: Path, *, seed: int = 0, context_length: int = 2048) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        return dest

    def build_scripted(dest: Path, text: str, *, after_tool: str | None = None,
                       context_length: int = 4096) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "script.txt").write_text(f"{text}\n{after_tool}\n{context_length}")
        return dest

    monkeypatch.setattr(demo_models, "build_random_model", build)
    monkeypatch.setattr(demo_models, "build_scripted_model", build_scripted)


def test_demo_tool_scripts_the_standard_tier(isolated_home: Paths) -> None:
    stack = demo_stack.write_demo_stack(isolated_home, tool="Bash").stack
    standard = stack.tier("standard")
    script = (Path(standard.path) / "script.txt").read_text()
    assert '"name": "Bash"' in script and "<tool_call>" in script and "65536" in script
    assert standard.model == "mlx-stack/demo-standard" and standard.context_window == 65536
    assert Path(stack.tier("fast").path) == isolated_home.demo_model_dir("fast")


def test_demo_stack_has_three_tiers_on_free_ports(isolated_home: Paths) -> None:
    config.set_value(isolated_home, "litellm-port", "4999")
    result = demo_stack.write_demo_stack(isolated_home)
    stack = stack_store.load(isolated_home)
    assert stack == result.stack
    assert stack.tier_names == ["standard", "fast", "longctx"]
    assert stack.gateway.port == 4999
    assert stack.tier("standard").context_window == 65536  # an agent's first turn fits
    assert stack.tier("longctx").context_window == 131072
    assert all(t.tool_call_parser == "hermes" for t in stack.tiers)
    assert all(Path(t.path).is_dir() and t.model.startswith("mlx-stack/demo-") for t in stack.tiers)
    assert len({t.port for t in stack.tiers}) == 3


def test_a_busy_port_is_skipped_and_ports_are_kept_on_rerun(
    isolated_home: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        monkeypatch.setattr(demo_stack, "FIRST_TIER_PORT", sock.getsockname()[1])
        first = demo_stack.write_demo_stack(isolated_home).stack
        assert demo_stack.FIRST_TIER_PORT not in [t.port for t in first.tiers]
    again = demo_stack.write_demo_stack(isolated_home).stack
    assert [t.port for t in again.tiers] == [t.port for t in first.tiers]
