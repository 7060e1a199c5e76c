"""Pid files and process groups, against real (tiny) child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from mlx_stack.system import pidfile, processes
from tests.helpers import wait_for


def test_record_round_trip_and_ownership(tmp_path: Path) -> None:
    record = pidfile.record_for("fast", os.getpid(), ["python", "-x"], 8002)
    pidfile.write(tmp_path, record)
    assert oct(pidfile.pid_path(tmp_path, "fast").stat().st_mode & 0o777) == "0o600"
    back = pidfile.read(tmp_path, "fast")
    assert back == record
    assert pidfile.is_ours(back)


def test_recycled_pid_is_not_ours(tmp_path: Path) -> None:
    # Same pid, another start time: what a pid file looks like after a reboot.
    record = pidfile.record_for("fast", os.getpid(), ["x"])
    recycled = pidfile.PidRecord("fast", record.pid, record.start_time - 3600, record.cmdline)
    assert not pidfile.is_ours(recycled)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    assert pidfile.read(tmp_path, "nothing") is None
    pidfile.pid_path(tmp_path, "bad").write_text("{not json")
    bad = pidfile.read(tmp_path, "bad")
    assert bad is not None and not pidfile.is_ours(bad)
    pidfile.remove(tmp_path, "bad")
    pidfile.remove(tmp_path, "bad")  # idempotent
    assert pidfile.read(tmp_path, "bad") is None


_CHILDISH = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print('service says hello', flush=True)\n"
    "time.sleep(60)\n"
)


def test_spawn_logs_and_stop_group_leaves_nothing(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "svc.log"
    pid = processes.spawn([sys.executable, "-c", _CHILDISH], log_file=log)
    try:
        assert processes.is_group_leader(pid)
        wait_for(lambda: len(processes.group_members(pid)) >= 3,
                 10, "the service, its child and its log writer")
        wait_for(lambda: log.exists() and "service says hello" in log.read_text(),
                 10, "the service's line in its log")
        assert processes.stop_group(pid, grace=5)
        assert processes.group_members(pid) == []
    finally:
        if processes.group_members(pid):
            os.killpg(pid, signal.SIGKILL)


def test_stop_group_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\ntime.sleep(60)\n"
    )
    log = tmp_path / "stubborn.log"
    pid = processes.spawn([sys.executable, "-c", code], log_file=log)
    wait_for(lambda: log.exists() and "up" in log.read_text(), 10, "the service to start")
    start = time.monotonic()
    assert processes.stop_group(pid, grace=0.5)
    assert time.monotonic() - start < 5
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_stop_group_ends_a_stopped_group_within_the_grace(tmp_path: Path) -> None:
    # A wedged (SIGSTOPped) service must act on SIGTERM at once, not wait for SIGKILL.
    log = tmp_path / "frozen.log"
    pid = processes.spawn([sys.executable, "-c", "import time\nprint('up', flush=True)\ntime.sleep(60)\n"],
                          log_file=log)
    wait_for(lambda: log.exists() and "up" in log.read_text(), 10, "the service to start")
    os.killpg(pid, signal.SIGSTOP)
    start = time.monotonic()
    assert processes.stop_group(pid, grace=10)
    assert time.monotonic() - start < 5
    assert processes.group_members(pid) == []


def test_stop_pid_for_a_plain_child() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert processes.stop_pid(proc.pid, grace=5)
    assert proc.wait(5) is not None


def test_stop_service_cleans_up_after_a_crashed_leader(isolated_home) -> None:  # type: ignore[no-untyped-def]
    from mlx_stack.services.service_control import stop_service

    log = isolated_home.logs_dir / "tier.log"
    pid = processes.spawn([sys.executable, "-c", _CHILDISH], log_file=log, owner=(isolated_home.home, "tier"))
    pidfile.write(isolated_home.run_dir, pidfile.record_for("tier", pid, ["x"]))
    wait_for(lambda: len(processes.group_members(pid)) >= 3, 10, "the service, its child and its log writer")
    os.kill(pid, signal.SIGKILL)  # the leader dies; its child lives on in the group
    wait_for(lambda: not processes.is_alive(pid), 10, "the leader to die")
    assert processes.group_members(pid)
    assert stop_service(isolated_home, "tier", grace=5) is False  # nothing of ours was running
    assert processes.group_members(pid) == []
    assert pidfile.read(isolated_home.run_dir, "tier") is None


def test_dead_leader_of_a_live_foreign_group_is_never_signalled(isolated_home) -> None:  # type: ignore[no-untyped-def]
    """A stale pid file naming the dead leader of a live group that is not ours
    (no marker): the group's survivors are left alone, the pid file goes."""
    from mlx_stack.services.service_control import stop_service

    log = isolated_home.logs_dir / "other.log"
    pid = processes.spawn([sys.executable, "-c", _CHILDISH], log_file=log)  # no owner: not ours
    try:
        pidfile.write(isolated_home.run_dir, pidfile.record_for("tier", pid, ["x"]))
        wait_for(lambda: len(processes.group_members(pid)) >= 3,
                 10, "the service, its child and its log writer")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not processes.is_alive(pid), 10, "the leader to die")
        survivors = processes.group_members(pid)
        assert survivors
        assert stop_service(isolated_home, "tier", grace=2) is False
        time.sleep(0.3)
        assert sorted(processes.group_members(pid)) == sorted(survivors)  # untouched
        assert pidfile.read(isolated_home.run_dir, "tier") is None
    finally:
        if processes.group_members(pid):
            os.killpg(pid, signal.SIGKILL)


def test_pid_file_with_another_command_line_is_not_ours() -> None:
    record = pidfile.record_for("fast", os.getpid(), ["x"])
    other = pidfile.PidRecord("fast", record.pid, record.start_time, ("sleep", "100"))
    assert not pidfile.is_ours(other)
    script = ("/v/bin/vllm-mlx", "serve", "m")
    assert pidfile.cmdline_matches(script, ("/v/bin/python", "/v/bin/vllm-mlx", "serve", "m"))
    assert not pidfile.cmdline_matches(script, ("/v/bin/python", "/v/bin/other", "serve", "m"))


def test_lost_pid_file_service_is_found_by_its_marker(isolated_home) -> None:  # type: ignore[no-untyped-def]
    from mlx_stack.services.running import running_record
    from mlx_stack.services.service_control import stop_service
    from mlx_stack.system import identity

    log = isolated_home.logs_dir / "tier.log"
    pid = processes.spawn([sys.executable, "-c", _CHILDISH], log_file=log, owner=(isolated_home.home, "tier"))
    try:
        wait_for(lambda: len(identity.find(isolated_home.home, "tier")) >= 3,
                 10, "the service, its child and its log writer")
        found = running_record(isolated_home, "tier", adopt=True)  # no pid file at all
        assert found is not None and found.pid == pid
        assert pidfile.is_ours(pidfile.read(isolated_home.run_dir, "tier"))  # adopted
        pidfile.pid_path(isolated_home.run_dir, "tier").write_bytes(b"\xff\xfe garbage")
        assert stop_service(isolated_home, "tier", grace=5) is True
        assert identity.find(isolated_home.home, "tier") == []
        assert processes.group_members(pid) == []
    finally:
        if processes.group_members(pid):
            os.killpg(pid, signal.SIGKILL)
