from __future__ import annotations

import sys

import pytest

from mlx_stack.system import sysinfo


@pytest.mark.skipif(sys.platform == "darwin", reason="the CPU profile is for non-Mac machines")
def test_cpu_profile_on_this_machine():
    raw = sysinfo.read_cpu()
    assert raw.memory_bytes > 0 and raw.cpu_name and raw.os_name
    assert not sysinfo.is_apple_silicon()


def test_a_missing_command_yields_empty_text():
    assert sysinfo._run(["/nonexistent/sysctl", "hw"]) == ""
