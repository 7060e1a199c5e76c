"""Start and stop the stack's processes (the only code that signals them).

Every service runs in its own process group, so its pid is also its group id:
stopping sends SIGTERM to the whole group, waits a grace period, then SIGKILLs
what is left. Output goes through the log writer (same process group, so the
group signal stops it too), which rotates the log by size.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

from mlx_stack.system import identity
from mlx_stack.system.dirs import make_private_dirs
from mlx_stack.system.logwriter import command as logwriter_command

GRACE_S = 10.0
_POLL_S = 0.05

# Popen objects of the children started by this process, kept so they are reaped
# (no zombies, no "still running" warnings) when they stop.
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


def spawn(
    argv: Sequence[str],
    *,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    log_max_bytes: int = 50 * 1024 * 1024,
    log_keep: int = 5,
    owner: tuple[Path, str] | None = None,
    redact_prompts: bool = False,
) -> int:
    """Start ``argv`` in a new process group with its output in ``log_file``; return its pid.

    ``owner`` (state folder, service name) marks the service and its log writer in
    their environment, so they are found by identity even without a pid file.
    """
    make_private_dirs(log_file.parent)
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    writer_env = dict(os.environ)
    for key in (identity.HOME_MARK, identity.SERVICE_MARK, identity.ROLE_MARK):
        full_env.pop(key, None)  # never inherit another service's marker
        writer_env.pop(key, None)
    if owner is not None:
        full_env.update(identity.marker_env(owner[0], owner[1], identity.SERVICE_ROLE))
        writer_env.update(identity.marker_env(owner[0], owner[1], identity.WRITER_ROLE))
    # A process group of its own, but not a new session: setpgid() cannot move the
    # log writer into a group of another session, and the writer must share the
    # service's group so one killpg stops both. Neither holds the terminal.
    # The service writes to a non-blocking pipe: with its writer stopped or gone, a
    # full pipe makes the service's writes fail (lines lost) instead of blocking it.
    read_end, write_end = _log_pipe()
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=write_end, stderr=write_end,
            env=full_env, process_group=0, close_fds=True,
        )
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        raise
    os.close(write_end)
    try:
        writer = subprocess.Popen(
            logwriter_command(log_file, log_max_bytes, log_keep, redact_prompts=redact_prompts),
            stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            process_group=proc.pid, close_fds=True, env=writer_env,
        )
        with _children_lock:
            _children[writer.pid] = writer
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        os.close(read_end)  # the writer holds the only read end now
    with _children_lock:
        _children[proc.pid] = proc
    return proc.pid


_PIPE_BYTES = 1 << 20  # Linux lets a pipe hold this much (F_SETPIPE_SZ); macOS grows its own


def _log_pipe() -> tuple[int, int]:
    """A pipe for a service's output: big where the OS allows, the write end non-blocking."""
    import fcntl

    read_end, write_end = os.pipe()
    setpipe_sz = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setpipe_sz is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, setpipe_sz, _PIPE_BYTES)
    os.set_blocking(write_end, False)
    return read_end, write_end


def _reap() -> None:
    with _children_lock:  # down stops services from several threads at once
        for pid, proc in list(_children.items()):
            if proc.poll() is not None:
                _children.pop(pid, None)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    _reap()
    members: list[int] = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return members


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_group(
    pgid: int,
    grace: float = GRACE_S,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """SIGTERM the group, wait up to ``grace`` s, SIGKILL the rest; True once it is empty.

    The caller must have checked that ``pgid`` is ours (see pidfile.is_ours).
    """
    if not group_members(pgid):
        return True
    _killpg(pgid, signal.SIGTERM)
    # A stopped (SIGSTOP, wedged) process only acts on SIGTERM once it runs again.
    _killpg(pgid, signal.SIGCONT)
    deadline = clock() + grace
    while clock() < deadline:
        if not group_members(pgid):
            return True
        sleep(_POLL_S)
    _killpg(pgid, signal.SIGKILL)
    deadline = clock() + 5.0
    while clock() < deadline:
        if not group_members(pgid):
            return True
        sleep(_POLL_S)
    return not group_members(pgid)


def stop_marked(found: Sequence[identity.Marked], grace: float = GRACE_S) -> bool:
    """SIGTERM each of these processes (found by their marker), SIGKILL after ``grace`` s.

    Each signal goes to that very process: psutil checks pid and start time before
    it signals, and a process whose marker changed is skipped. True once all are gone.
    """
    procs: list[psutil.Process] = []
    for m in found:
        if not identity.still_marked(m):
            continue
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(m.pid))
    if not procs:
        return True
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
            proc.resume()  # a stopped process acts on SIGTERM only once it runs
    _gone, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _gone, alive = psutil.wait_procs(alive, timeout=5.0)
    _reap()
    return not alive


def stop_pid(pid: int, grace: float = GRACE_S) -> bool:
    """SIGTERM one process, SIGKILL it after ``grace`` s; True once it is gone."""
    try:
        proc = psutil.Process(pid)
        proc.terminate()
        try:
            proc.wait(grace)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    _reap()
    return True


def is_alive(pid: int) -> bool:
    """True if ``pid`` is a running (non-zombie) process."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False
