"""system.limits.raise_open_files, in child processes started with macOS-like limits."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

_CHILD = ("import resource, sys; from mlx_stack.system.limits import raise_open_files; "
          "print(*raise_open_files(int(sys.argv[1])), resource.getrlimit(resource.RLIMIT_NOFILE)[0])")


def _run_with(soft: int, hard: int, wanted: int) -> tuple[int, int, int]:
    """raise_open_files(wanted) in a child whose limits were set to (soft, hard) at start."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    out = subprocess.run([sys.executable, "-c", _CHILD, str(wanted)], preexec_fn=limit, check=True,
                         capture_output=True, text=True, timeout=60).stdout.split()
    before, after, now = (int(x) for x in out)
    return before, after, now


_, HARD = resource.getrlimit(resource.RLIMIT_NOFILE)


@pytest.mark.skipif(HARD != resource.RLIM_INFINITY and HARD < 4096, reason="hard open-file limit below 4096")
def test_the_soft_limit_is_raised_toward_wanted_within_the_hard_one() -> None:
    hard = 4096 if HARD == resource.RLIM_INFINITY else min(HARD, 20000)
    assert _run_with(256, hard, 8192) == (256, min(8192, hard), min(8192, hard))  # macOS's default soft
    assert _run_with(256, 1024, 8192) == (256, 1024, 1024)  # capped at the hard limit
    assert _run_with(2048, hard, 1024) == (2048, 2048, 2048)  # never lowered
    assert _run_with(256, hard, 300) == (256, 300, 300)


def test_a_refusal_leaves_the_limit_as_it_was() -> None:
    """macOS refuses (ValueError) past kern.maxfilesperproc: the limit stays, nothing raised."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024))

    child = ("import resource\n"
             "def refuse(*a): raise ValueError('not allowed to raise maximum limit')\n"
             "resource.setrlimit = refuse\n" + _CHILD)
    out = subprocess.run([sys.executable, "-c", child, "8192"], preexec_fn=limit, check=True,
                         capture_output=True, text=True, timeout=60).stdout.split()
    assert out == ["256", "256", "256"]


def test_building_a_demo_model_keeps_the_open_file_limit(tmp_path) -> None:
    """mlx_lm lowers RLIMIT_NOFILE to (2048, 4096) when imported; what `setup --demo` starts
    afterwards (the front door) must not inherit that."""
    import subprocess
    import sys

    code = ("import resource; from mlx_stack.services import demo_models; "
            f"demo_models.build_random_model(__import__('pathlib').Path({str(tmp_path / 'm')!r})); "
            "print(*resource.getrlimit(resource.RLIMIT_NOFILE))")
    import resource

    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert tuple(int(x) for x in out.stdout.split()) == before
