"""Who is ours: finding the stack's processes by a marker in their environment.

Every process `spawn` starts (a service and its log writer) carries three variables:
the state folder it belongs to, its service name and its role. They are inherited by
the service's own children. So even with its pid file gone or corrupt, a running
service is found (and adopted or stopped) by what it is, never by a pid alone; and a
process without the marker of this state folder and service is never signalled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

HOME_MARK = "MLX_STACK_MARK_HOME"
SERVICE_MARK = "MLX_STACK_MARK_SERVICE"
ROLE_MARK = "MLX_STACK_MARK_ROLE"
SERVICE_ROLE = "service"
WRITER_ROLE = "logwriter"


def marker_env(home: Path, service: str, role: str = SERVICE_ROLE) -> dict[str, str]:
    """The variables that tie a process to ``home`` and ``service``."""
    return {HOME_MARK: str(home), SERVICE_MARK: service, ROLE_MARK: role}


@dataclass(frozen=True)
class Marked:
    """A live process carrying the marker of one service of a state folder."""

    pid: int
    start_time: float
    cmdline: tuple[str, ...]
    service: str
    role: str
    pgid: int

    @property
    def is_leader(self) -> bool:
        """The service process itself: its role says so and it leads its own group."""
        return self.role == SERVICE_ROLE and self.pgid == self.pid


def find(home: Path, service: str | None = None, *, parents: dict[int, int] | None = None) -> list[Marked]:
    """Live processes (of this user) marked as belonging to ``home`` (and ``service``).
    ``parents``: filled with each found process's parent pid (a service's children carry
    its marker too, so its process tree is found among them).

    The environment is read first: it rules out nearly every process, and the other
    checks cost a read each (reading them for every process doubled a `status`'s scan)."""
    wanted = str(home)
    me = os.getuid()
    found: list[Marked] = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid():
                continue
            env = proc.environ()  # another user's process: AccessDenied; a zombie's: empty or an error
            if env.get(HOME_MARK) != wanted:
                continue
            name = env.get(SERVICE_MARK, "")
            if not name or (service is not None and name != service):
                continue
            with proc.oneshot():
                if proc.uids().real != me or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                ppid = proc.ppid()
                found.append(Marked(proc.pid, proc.create_time(), tuple(proc.cmdline()), name,
                                    env.get(ROLE_MARK, ""), os.getpgid(proc.pid)))
            if parents is not None:
                parents[proc.pid] = ppid
        except (psutil.Error, OSError):
            continue
    return found


def leader_among(found: list[Marked]) -> Marked | None:
    """The oldest of one service's marked processes (``found``) that leads its own group."""
    leaders = [m for m in found if m.is_leader]
    return min(leaders, key=lambda m: m.start_time) if leaders else None


def still_marked(m: Marked) -> bool:
    """True if the process is still the one we saw (same pid, start time and marker)."""
    try:
        proc = psutil.Process(m.pid)
        if abs(proc.create_time() - m.start_time) > 0.05:
            return False
        return proc.environ().get(SERVICE_MARK) == m.service
    except (psutil.Error, OSError):
        return False


WRITER_OK, WRITER_GONE, WRITER_STOPPED = "ok", "gone", "stopped"


def writers(home: Path, service: str) -> list[Marked]:
    return [m for m in find(home, service) if m.role == WRITER_ROLE]


def writer_state(home: Path, service: str) -> str:
    """``ok``, ``gone`` (no live log writer: the service's log has stopped) or ``stopped``
    (SIGSTOP: its pipe fills, and the service's output is lost until it runs again)."""
    return writer_state_among(find(home, service))


def writer_state_among(marked: list[Marked]) -> str:
    """:func:`writer_state` of one service's marked processes, already found."""
    if not any(m.role == SERVICE_ROLE for m in marked):
        return WRITER_OK  # not started with markers (an older mlx-stack): cannot tell
    found = [m for m in marked if m.role == WRITER_ROLE]
    if not found:
        return WRITER_GONE
    for m in found:
        try:
            if psutil.Process(m.pid).status() == psutil.STATUS_STOPPED:
                return WRITER_STOPPED
        except psutil.Error:
            continue
    return WRITER_OK


def resume_writers(home: Path, service: str) -> int:
    """SIGCONT the stopped log writers of ``service``; how many were resumed."""
    resumed = 0
    for m in writers(home, service):
        try:
            proc = psutil.Process(m.pid)  # psutil checks pid + start time before signalling
            if proc.status() == psutil.STATUS_STOPPED and still_marked(m):
                proc.resume()
                resumed += 1
        except psutil.Error:
            continue
    return resumed
