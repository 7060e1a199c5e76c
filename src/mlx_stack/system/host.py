"""The one seam between the services and the operating system.

``Host`` wraps what the services (``up``/``down``/``status``, the watchdog, stack
changes) do to the machine: pid files, processes, the stack lock, HTTP probes, server
statistics, the clock, signal handlers and ports. The services take a ``host``
parameter (``None`` means :data:`HOST`, this real one), so their logic runs in unit
tests against a recording fake (``tests/fake_host.py``) in milliseconds.

Each method is a thin call into the ``system`` module that does the work; heavy imports
(httpx, through ``server_stats``) happen inside the methods, so `status` stays quick.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from mlx_stack.system import identity, pidfile, probes, processes

if TYPE_CHECKING:
    from mlx_stack.system import ports
    from mlx_stack.system.server_stats import ServerCounters

T = TypeVar("T")
SignalHandler = Callable[[int, object], None]


class Detached(Protocol):
    """A detached child (the watchdog daemon): its pid, whether it exited."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...


class Host:
    """The real machine. Subclass it (tests/fake_host.py) to script or record what happens."""

    # --- pid files ----------------------------------------------------------------------

    def read_pid(self, run_dir: Path, service: str) -> pidfile.PidRecord | None:
        return pidfile.read(run_dir, service)

    def write_pid(self, run_dir: Path, record: pidfile.PidRecord) -> None:
        pidfile.write(run_dir, record)

    def remove_pid(self, run_dir: Path, service: str) -> None:
        pidfile.remove(run_dir, service)

    def is_ours(self, record: pidfile.PidRecord) -> bool:
        """The recorded process still runs (same pid, start time and command line)."""
        return pidfile.is_ours(record)

    def pid_services(self, run_dir: Path) -> list[str]:
        """The services that have a pid file in ``run_dir``."""
        try:
            return [f.stem for f in run_dir.glob("*.pid")] if run_dir.is_dir() else []
        except OSError:
            return []

    def record_for(self, service: str, pid: int, argv: Sequence[str], port: int = 0) -> pidfile.PidRecord:
        """The pid record of a process just spawned (reads its start time)."""
        return pidfile.record_for(service, pid, tuple(argv), port)

    # --- processes ----------------------------------------------------------------------

    def spawn(self, argv: Sequence[str], *, log_file: Path, env: Mapping[str, str] | None = None,
              log_max_bytes: int = 50 * 1024 * 1024, log_keep: int = 5,
              owner: tuple[Path, str] | None = None, redact_prompts: bool = False) -> int:
        return processes.spawn(argv, log_file=log_file, env=env, log_max_bytes=log_max_bytes,
                               log_keep=log_keep, owner=owner, redact_prompts=redact_prompts)

    def spawn_detached(self, argv: Sequence[str]) -> Detached:
        """``argv`` in a session of its own, no stdio (the background watchdog)."""
        import subprocess

        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)

    def stop_group(self, pgid: int, grace: float = processes.GRACE_S) -> bool:
        return processes.stop_group(pgid, grace)

    def stop_pid(self, pid: int, grace: float = processes.GRACE_S) -> bool:
        return processes.stop_pid(pid, grace)

    def stop_marked(self, found: Sequence[identity.Marked], grace: float = processes.GRACE_S) -> bool:
        return processes.stop_marked(found, grace)

    def is_group_leader(self, pid: int) -> bool:
        return processes.is_group_leader(pid)

    def find_marked(self, home: Path, service: str | None = None) -> list[identity.Marked]:
        """Live processes marked as this state folder's (and ``service``'s)."""
        return identity.find(home, service)

    def marked_leader(self, home: Path, service: str) -> identity.Marked | None:
        return identity.leader_among(self.find_marked(home, service))

    def marked_services(self, home: Path) -> set[str]:
        return {m.service for m in self.find_marked(home)}

    def writer_state(self, home: Path, service: str) -> str:
        return identity.writer_state_among(self.find_marked(home, service))

    def one_scan(self, ahead: probes.Ahead | None = None) -> Host:
        """This machine, with the marked processes scanned once per state folder and kept
        (:class:`OneScan`): for one read-only look at every service (`status`, a watchdog
        round), which would otherwise read every process's environment once per service.
        ``ahead``: probe requests already sent, answered from there."""
        return OneScan(ahead)

    def resume_writers(self, home: Path, service: str) -> int:
        return identity.resume_writers(home, service)

    # --- the stack lock -------------------------------------------------------------------

    def lock(self, path: Path, timeout: float, what: str) -> AbstractContextManager[None]:
        """An exclusive flock on ``path``; ConflictError after ``timeout`` seconds."""
        from mlx_stack.system.locks import file_lock

        return file_lock(path, timeout=timeout, what=what)

    def lock_held(self, path: Path) -> bool:
        """True if some process holds the flock on ``path`` (a live watchdog holds its own)."""
        from mlx_stack.system.locks import is_held

        return is_held(path)

    # --- probes -------------------------------------------------------------------------

    def health(self, url: str, *, timeout: float, route: str) -> probes.ProbeResult:
        return probes.health(url, timeout=timeout, route=route)

    def completion(self, url: str, model: str, *, api_key: str | None = None, timeout: float = 10.0,
                   headers: dict[str, str] | None = None, kind: str = "chat") -> probes.ProbeResult:
        """A one-token completion (a retrieval tier: one tiny embedding or rerank request)."""
        return probes.ask(probes.asked(url, model, api_key=api_key, timeout=timeout, headers=headers,
                                       kind=kind))

    def served_models(self, url: str, *, api_key: str | None = None) -> list[str] | None:
        from mlx_stack.system.gateway_routes import served_models

        return served_models(url, api_key=api_key)

    def in_parallel(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        return probes.in_parallel(calls)

    # --- server statistics --------------------------------------------------------------

    def cpu_seconds(self, pid: int) -> float | None:
        from mlx_stack.system import server_stats

        return server_stats.cpu_seconds(pid)

    def vllm_counters(self, url: str, timeout: float = 1.0) -> ServerCounters | None:
        from mlx_stack.system import server_stats

        return server_stats.vllm_counters(url, timeout=timeout)

    def available_memory(self) -> int:
        from mlx_stack.system import server_stats

        return server_stats.available_memory()

    def tree_rss(self, pid: int) -> int | None:
        """Resident bytes of ``pid`` and its live descendants (None if it is gone)."""
        from mlx_stack.system import server_stats

        return server_stats.tree_rss(pid)

    def live_children(self, pid: int) -> int | None:
        """Live direct children of ``pid`` (a cluster tier's launcher: one per rank)."""
        from mlx_stack.system import server_stats

        return server_stats.live_children(pid)

    def metal_active_bytes(self, url: str) -> int | None:
        """The Metal memory the server at ``url`` reports in use; None off macOS (no Metal)."""
        import sys

        if sys.platform != "darwin":
            return None
        from mlx_stack.system import server_stats

        return server_stats.metal_active_bytes(url)

    def reap_children(self) -> None:
        from mlx_stack.system import server_stats

        server_stats.reap_children()

    # --- clock ----------------------------------------------------------------------------

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Sleep up to ``seconds`` unless ``event`` is set; True if it is."""
        return event.wait(seconds)

    # --- signals --------------------------------------------------------------------------

    def on_signals(self, handler: SignalHandler,
                   signums: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Install ``handler`` for ``signums`` (main thread only)."""
        for signum in signums:
            signal.signal(signum, handler)

    def signal_name(self, signum: int) -> str:
        return signal.Signals(signum).name

    def sigterm_raises(self, error: Callable[[], BaseException]) -> AbstractContextManager[None]:
        """SIGTERM raises ``error()`` meanwhile (main thread only), so what started
        something unwinds and stops it."""
        from mlx_stack.system import interrupt

        return interrupt.sigterm_raises(error)

    def signals_ignored(self) -> AbstractContextManager[None]:
        """SIGINT and SIGTERM ignored meanwhile (clean-up that must finish)."""
        from mlx_stack.system import interrupt

        return interrupt.signals_ignored()

    # --- ports ----------------------------------------------------------------------------

    def port_is_free(self, port: int, host: str = "127.0.0.1") -> bool:
        from mlx_stack.system import ports

        return ports.is_free(port, host)

    def port_holder(self, port: int) -> ports.Holder:
        from mlx_stack.system import ports

        return ports.holder(port)

    def free_port(self) -> int:
        from mlx_stack.system import ports

        return ports.free_port()

    def port_answers(self, port: int, timeout: float = 0.5) -> bool:
        """True if something accepts a TCP connection on 127.0.0.1:``port``."""
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            return sock.connect_ex(("127.0.0.1", port)) == 0


class OneScan(Host):
    """The real machine, with the first scan of a state folder's marked processes kept.

    Reading every process's environment takes ~30 ms here; `status` asked it five times
    (the services, then each service's log writer), from four threads at once. Anything
    started or stopped after the scan is not seen: use it for a look, never for a change.
    A probe request that ``ahead`` sent already is answered from there; every probe
    request made is kept in ``asked`` with whether it answered.
    """

    def __init__(self, ahead: probes.Ahead | None = None) -> None:
        self._scans: dict[Path, list[identity.Marked]] = {}
        self._parents: dict[int, int] | None = None  # each marked process's parent (the first scan)
        self._lock = threading.Lock()
        self._ahead = ahead
        self.asked: list[tuple[probes.Asked, bool]] = []

    def completion(self, url: str, model: str, *, api_key: str | None = None, timeout: float = 10.0,
                   headers: dict[str, str] | None = None, kind: str = "chat") -> probes.ProbeResult:
        request = probes.asked(url, model, api_key=api_key, timeout=timeout, headers=headers, kind=kind)
        early = self._ahead.take(request) if self._ahead is not None else None
        result = early if early is not None else probes.ask(request)
        with self._lock:
            self.asked.append((request, result.ok))
        return result

    def find_marked(self, home: Path, service: str | None = None) -> list[identity.Marked]:
        with self._lock:  # the probes run in threads: one scan, not one each
            if home not in self._scans:
                parents: dict[int, int] = {}
                self._scans[home] = identity.find(home, parents=parents)
                self._parents = self._parents or parents
            found = self._scans[home]
        return [m for m in found if service in (None, m.service)]

    def tree_rss(self, pid: int) -> int | None:
        """As the real machine's, with the descendants found among the scanned processes
        (they carry the service's marker): psutil would read every process's parent again
        for each tier."""
        from mlx_stack.system import server_stats

        with self._lock:
            parents = self._parents
        return server_stats.tree_rss(pid, parents)

    def one_scan(self, ahead: probes.Ahead | None = None) -> Host:
        return self  # already the one look (its own requests sent ahead, if any)


HOST = Host()


def real(host: Host | None) -> Host:
    """``host``, or the real machine when None (the services' default)."""
    return HOST if host is None else host
