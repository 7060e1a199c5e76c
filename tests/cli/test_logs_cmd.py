"""`mlx-stack logs` through the CLI."""

from __future__ import annotations

import gzip
import json

from mlx_stack.paths import Paths


def _setup(p: Paths) -> None:
    p.logs_dir.mkdir(parents=True, exist_ok=True)
    (p.logs_dir / "fast.log").write_text("".join(f"line {i}\n" for i in range(100)))
    (p.logs_dir / "fast.log.1.gz").write_bytes(gzip.compress(b"archived\n"))


def test_list(run, isolated_home: Paths) -> None:
    r = run("logs")
    assert r.exit_code == 0 and "no logs yet" in r.stderr
    _setup(isolated_home)
    r = run("logs")
    assert r.exit_code == 0
    assert "fast" in r.stdout and "1 (" in r.stdout
    data = json.loads(run("logs", "--json").stdout)
    assert data[0]["service"] == "fast" and data[0]["size"] == 790


def test_tail_default_and_n(run, isolated_home: Paths) -> None:
    _setup(isolated_home)
    out = run("logs", "fast").stdout.splitlines()
    assert len(out) == 50 and out[-1] == "line 99" and out[0] == "line 50"
    assert run("logs", "fast", "--tail", "2").stdout == "line 98\nline 99\n"
    assert run("logs", "fast", "--all").stdout.splitlines()[:2] == ["archived", "line 0"]
    assert run("logs", "fast", "--all", "-n", "101").stdout.splitlines()[0] == "archived"


def test_unknown_service_exits_4(run, isolated_home: Paths) -> None:
    _setup(isolated_home)
    r = run("logs", "nope")
    assert r.exit_code == 4 and "no log for 'nope'" in r.stderr and "fast" in r.stderr


def test_rotate(run, isolated_home: Paths) -> None:
    _setup(isolated_home)
    r = run("logs", "--rotate")
    assert r.exit_code == 0 and "fast: rotated" in r.stderr
    assert (isolated_home.logs_dir / "fast.log.2.gz").exists()
    assert not (isolated_home.logs_dir / "fast.log").exists()
