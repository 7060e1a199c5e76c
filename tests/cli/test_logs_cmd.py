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


HOSTILE = "GET /v1/x\x1b[31m red\r\x00 \x85 done"
SHOWN = "GET /v1/x\\x1b[31m red\\r\\x00 \\x85 done"
CONTROLS = ("\x1b", "\r", "\x00", "\x85")


def _hostile_log(p: Paths) -> None:
    p.logs_dir.mkdir(parents=True, exist_ok=True)
    (p.logs_dir / "gateway.log").write_text(f"first\n{HOSTILE}\n")
    (p.logs_dir / "gateway.log.1.gz").write_bytes(gzip.compress(f"{HOSTILE}\n".encode()))
    (p.logs_dir / "evil\x1b[2J.log").write_text("x\n")  # a file name is anyone's too


def test_no_raw_control_reaches_the_terminal_in_any_mode(run, isolated_home: Paths) -> None:
    _hostile_log(isolated_home)
    for args in (("logs", "gateway"), ("logs", "gateway", "--all"), ("logs", "gateway", "-n", "1"),
                 ("logs", "gateway", "--json"), ("logs",), ("logs", "--json"), ("logs", "nope")):
        r = run(*args)
        out = r.stdout + r.stderr
        assert not any(c in out for c in CONTROLS), (args, out)
    assert run("logs", "gateway").stdout == f"first\n{SHOWN}\n"
    assert run("logs", "gateway", "--all").stdout == f"{SHOWN}\nfirst\n{SHOWN}\n"
    assert json.loads(run("logs", "gateway", "--json").stdout)["lines"] == ["first", SHOWN]
    assert "evil\\x1b[2J" in run("logs").stdout
    assert "evil\\x1b[2J" in run("logs", "nope").stderr


def test_follow_escapes_what_it_prints(isolated_home: Paths) -> None:
    """`logs --follow` in a real child process: the lines written while it runs come out escaped."""
    import subprocess
    import time

    from tests.helpers import cli_command, cli_env

    _hostile_log(isolated_home)
    log = isolated_home.logs_dir / "gateway.log"
    proc = subprocess.Popen(cli_command("logs", "gateway", "--follow", "-n", "0"), env=cli_env(isolated_home),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(2.0)  # started, reading from the end of the file
        with open(log, "a") as fh:
            fh.write(f"{HOSTILE}\nlast\n")
        time.sleep(1.0)  # it polls every 0.25 s and flushes every line
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert out.decode() == f"{SHOWN}\nlast\n", out
