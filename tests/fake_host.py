"""A recording fake of ``mlx_stack.system.host.Host``: no process, socket, lock file or
real clock. Pass it as ``host=`` to `up`, `down`, `status`, the watchdog and stack_apply.

- processes are rows in ``procs``; ``spawn`` adds one (the service name from ``owner``),
  ``crash(service)`` kills one, the stop calls kill them; ``events`` records what happened;
- pid files live in ``pid_files`` (by service);
- probes answer from the processes: a live service answers its liveness route and a
  completion in ``LATENCY_S``, unless ``liveness`` / ``completions`` script it (a result, or
  a list of results used in turn, the last one repeating);
- the clock is manual: ``sleep`` and ``wait`` advance it; ``wait`` sets the loop's stop
  event after ``stop_after_waits`` waits (a watchdog run of a few rounds);
- ``busy_locks`` holds the names of lock files another process holds (ConflictError);
  ``held_locks`` the names ``lock_held`` reports held (a live watchdog's lock);
- memory: ``free_memory`` is what the OS can hand out, ``rss`` the resident bytes by pid,
  ``metal`` the Metal bytes a server reports (by port).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mlx_stack.errors import ConflictError
from mlx_stack.system import identity
from mlx_stack.system.host import Detached, Host, SignalHandler
from mlx_stack.system.pidfile import PidRecord
from mlx_stack.system.ports import Holder
from mlx_stack.system.probes import Ahead, ProbeResult
from mlx_stack.system.server_stats import ServerCounters

T = TypeVar("T")
LATENCY_S = 0.01
REFUSED = ProbeResult(False, 0.0, "connection refused")
Script = ProbeResult | list[ProbeResult] | Callable[[], ProbeResult]


@dataclass
class FakeProc:
    pid: int
    argv: tuple[str, ...]
    service: str | None
    home: Path | None
    start_time: float
    alive: bool = True
    leader: bool = True

    @property
    def port(self) -> int:
        args = list(self.argv)
        return int(args[args.index("--port") + 1]) if "--port" in args else 0


@dataclass
class FakeDetached:
    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class FakeHost(Host):
    def __init__(self, *, start: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self.clock = start
        self.wall_offset = wall - start
        self.next_pid = 5000
        self.procs: dict[int, FakeProc] = {}
        self.pid_files: dict[str, PidRecord] = {}
        self.events: list[str] = []
        self.liveness: dict[str, Script] = {}  # by service
        self.completions: dict[str, Script] = {}  # by service (the front door: by itself)
        self.spawn_fails: dict[str, str] = {}  # service -> OSError text
        self.die_on_start: set[str] = set()  # spawned, then exits at once
        self.on_spawn: Callable[[FakeProc], None] | None = None
        self.busy_locks: set[str] = set()
        self.held_locks: set[str] = set()
        self.free_memory = 64 * 1024**3
        self.rss: dict[int, int] = {}
        self.children: dict[int, int] = {}  # live children of a pid (a cluster launcher's ranks)
        self.metal: dict[int, int] = {}
        self.busy_ports: set[int] = set()
        self.lingering_ports: set[int] = set()  # still answer after their process stopped
        self.cpu: dict[int, float] = {}
        self.counters: dict[int, ServerCounters] = {}
        self.writers: dict[str, str] = {}
        self.signal_handlers: dict[int, SignalHandler] = {}
        self.stop_after_waits: int | None = None
        self.waits = 0
        self.next_port = 20000
        # The front door's /v1/models: the tiers of this routes file (re-read at each call
        # while ``gateway_reloads``, else as it was when the front door started).
        self.routes_file: Path | None = None
        self.gateway_reloads = True
        self._served_at_start: list[str] | None = None

    # --- helpers for tests ------------------------------------------------------------

    def running(self, service: str) -> FakeProc | None:
        return next((pr for pr in self.procs.values() if pr.alive and pr.service == service), None)

    def proc_of(self, service: str) -> FakeProc:
        proc = self.running(service)
        assert proc is not None, f"{service} does not run"
        return proc

    def crash(self, service: str) -> None:
        proc = self.running(service)
        assert proc is not None, f"{service} does not run"
        proc.alive = False
        self.events.append(f"crash {service}")

    def spawned(self) -> list[str]:
        return [e.split(" ", 1)[1] for e in self.events if e.startswith("spawn ")]

    def stopped(self) -> list[str]:
        return [e.split(" ", 1)[1] for e in self.events if e.startswith("stop ")]

    def _answer(self, scripts: Mapping[str, Script], service: str) -> ProbeResult:
        script = scripts.get(service)
        if script is None:
            return ProbeResult(True, LATENCY_S, None, 200)
        if isinstance(script, ProbeResult):
            return script
        if isinstance(script, list):
            return script.pop(0) if len(script) > 1 else script[0]
        return script()

    def _listening(self, url: str) -> FakeProc | None:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        return next((pr for pr in self.procs.values() if pr.alive and pr.port == port), None)

    def _kill(self, pid: int) -> None:
        proc = self.procs.get(pid)
        if proc is not None and proc.alive:
            proc.alive = False
            self.events.append(f"stop {proc.service}")

    # --- pid files --------------------------------------------------------------------

    def read_pid(self, run_dir: Path, service: str) -> PidRecord | None:
        return self.pid_files.get(service)

    def write_pid(self, run_dir: Path, record: PidRecord) -> None:
        self.pid_files[record.service] = record

    def remove_pid(self, run_dir: Path, service: str) -> None:
        if self.pid_files.pop(service, None) is not None:
            self.events.append(f"rm-pid {service}")

    def is_ours(self, record: PidRecord) -> bool:
        proc = self.procs.get(record.pid)
        return proc is not None and proc.alive and proc.start_time == record.start_time

    def pid_services(self, run_dir: Path) -> list[str]:
        return sorted(self.pid_files)

    def record_for(self, service: str, pid: int, argv: Sequence[str], port: int = 0) -> PidRecord:
        return PidRecord(service, pid, self.procs[pid].start_time, tuple(argv), port)

    # --- processes --------------------------------------------------------------------

    def spawn(self, argv: Sequence[str], *, log_file: Path, env: Mapping[str, str] | None = None,
              log_max_bytes: int = 0, log_keep: int = 0, owner: tuple[Path, str] | None = None,
              redact_prompts: bool = False) -> int:
        service = owner[1] if owner else None
        if service in self.spawn_fails:
            raise OSError(2, self.spawn_fails[service])
        pid, self.next_pid = self.next_pid, self.next_pid + 1
        proc = FakeProc(pid, tuple(argv), service, owner[0] if owner else None, self.time())
        self.procs[pid] = proc
        self.events.append(f"spawn {service}")
        if service == "gateway":
            self._served_at_start = self._routes()
        if service in self.die_on_start:
            proc.alive = False
        if self.on_spawn is not None:
            self.on_spawn(proc)
        return pid

    def spawn_detached(self, argv: Sequence[str]) -> Detached:
        self.events.append("detach " + " ".join(argv[3:]))
        return FakeDetached(4242)

    def stop_group(self, pgid: int, grace: float = 0.0) -> bool:
        self._kill(pgid)
        return True

    def stop_pid(self, pid: int, grace: float = 0.0) -> bool:
        self._kill(pid)
        return True

    def stop_marked(self, found: Sequence[identity.Marked], grace: float = 0.0) -> bool:
        for m in found:
            self._kill(m.pid)
        return True

    def is_group_leader(self, pid: int) -> bool:
        proc = self.procs.get(pid)
        return proc is not None and proc.leader

    def find_marked(self, home: Path, service: str | None = None) -> list[identity.Marked]:
        return [identity.Marked(pr.pid, pr.start_time, pr.argv, pr.service, identity.SERVICE_ROLE, pr.pid)
                for pr in self.procs.values()
                if pr.alive and pr.home == home and pr.service and service in (None, pr.service)]

    def marked_leader(self, home: Path, service: str) -> identity.Marked | None:
        found = self.find_marked(home, service)
        return found[0] if found else None

    def marked_services(self, home: Path) -> set[str]:
        return {m.service for m in self.find_marked(home)}

    def writer_state(self, home: Path, service: str) -> str:
        return self.writers.get(service, identity.WRITER_OK)

    def one_scan(self, ahead: Ahead | None = None) -> Host:
        return self  # the scripted processes: no scan to keep, nothing sent ahead

    def resume_writers(self, home: Path, service: str) -> int:
        self.writers[service] = identity.WRITER_OK
        self.events.append(f"resume-writer {service}")
        return 1

    # --- the stack lock -----------------------------------------------------------------

    def lock(self, path: Path, timeout: float, what: str) -> AbstractContextManager[None]:
        return self._lock(path, what)

    @contextlib.contextmanager
    def _lock(self, path: Path, what: str) -> Iterator[None]:
        if path.name in self.busy_locks:
            raise ConflictError(f"another {what} operation holds the lock {path}")
        self.events.append(f"lock {path.name}")
        yield

    def lock_held(self, path: Path) -> bool:
        return path.name in self.held_locks

    # --- probes -----------------------------------------------------------------------

    def health(self, url: str, *, timeout: float, route: str) -> ProbeResult:
        proc = self._listening(url)
        if proc is None or proc.service is None:
            return REFUSED
        return self._answer(self.liveness, proc.service)

    def completion(self, url: str, model: str, *, api_key: str | None = None, timeout: float = 10.0,
                   headers: dict[str, str] | None = None, kind: str = "chat") -> ProbeResult:
        proc = self._listening(url)
        if proc is None or proc.service is None:
            return REFUSED
        self.events.append(f"complete {proc.service}:{model}")
        if proc.service == "gateway" and "gateway" not in self.completions:
            tier = self.running(model)  # the front door passes it on to that tier, and names it
            result = REFUSED if tier is None else self._answer(self.completions, model)
            if result.ok:
                result = dataclasses.replace(result, served_by=model)
        else:
            result = self._answer(self.completions, proc.service)
        self.clock += min(result.latency_s, timeout)
        return result

    def _routes(self) -> list[str] | None:
        if self.routes_file is None or not self.routes_file.exists():
            return None
        return [t["name"] for t in json.loads(self.routes_file.read_text())["tiers"]]

    def served_models(self, url: str, *, api_key: str | None = None) -> list[str] | None:
        if self._listening(url) is None:
            return None
        return self._routes() if self.gateway_reloads else self._served_at_start

    def in_parallel(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        out: list[T] = []
        error: BaseException | None = None
        for call in calls:  # one after the other: a deterministic order of events
            try:
                out.append(call())
            except BaseException as exc:  # like probes.in_parallel: every call runs, then raise
                error = error or exc
        if error is not None:
            raise error
        return out

    # --- server statistics ------------------------------------------------------------

    def cpu_seconds(self, pid: int) -> float | None:
        return self.cpu.get(pid)

    def vllm_counters(self, url: str, timeout: float = 1.0) -> ServerCounters | None:
        proc = self._listening(url)
        return self.counters.get(proc.pid) if proc is not None else None

    def available_memory(self) -> int:
        return self.free_memory

    def live_children(self, pid: int) -> int | None:
        proc = self.procs.get(pid)
        return self.children.get(pid, 64) if proc is not None and proc.alive else None

    def tree_rss(self, pid: int) -> int | None:
        proc = self.procs.get(pid)
        return self.rss.get(pid, 0) if proc is not None and proc.alive else None

    def metal_active_bytes(self, url: str) -> int | None:
        proc = self._listening(url)
        return self.metal.get(proc.port) if proc is not None else None

    def reap_children(self) -> None:
        pass

    # --- clock --------------------------------------------------------------------------

    def monotonic(self) -> float:
        return self.clock

    def time(self) -> float:
        return self.wall_offset + self.clock

    def sleep(self, seconds: float) -> None:
        self.clock += seconds

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.clock += seconds
        self.waits += 1
        if self.stop_after_waits is not None and self.waits >= self.stop_after_waits:
            event.set()
        return event.is_set()

    # --- signals ------------------------------------------------------------------------

    def signal_name(self, signum: int) -> str:
        return signal.Signals(signum).name

    def on_signals(self, handler: SignalHandler,
                   signums: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        for signum in signums:
            self.signal_handlers[signum] = handler

    def sigterm_raises(self, error: Callable[[], BaseException]) -> AbstractContextManager[None]:
        self.events.append("sigterm raises")
        return contextlib.nullcontext()

    def signals_ignored(self) -> AbstractContextManager[None]:
        self.events.append("signals ignored")
        return contextlib.nullcontext()

    # --- ports --------------------------------------------------------------------------

    def port_is_free(self, port: int, host: str = "127.0.0.1") -> bool:
        return port not in self.busy_ports and not any(
            pr.alive and pr.port == port for pr in self.procs.values())

    def port_holder(self, port: int) -> Holder:
        return Holder(4321, "squatter")

    def free_port(self) -> int:
        self.next_port += 1
        return self.next_port

    def port_answers(self, port: int, timeout: float = 0.5) -> bool:
        return port in self.lingering_ports or any(pr.alive and pr.port == port for pr in self.procs.values())
