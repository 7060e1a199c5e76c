"""The one seam between the data plane and the processes of a stack's tiers.

The front door starts an on-demand tier on its first request and stops it when idle, but
it does not run the control plane's code to do so (the stack lock, the memory guard,
evictions, pid files, the log writer): it asks a :class:`Launcher`. Two implement it:

- :class:`ChildLauncher`, the front door's: each change (wake, sleep, clear a failed
  start) runs ``python -m mlx_stack.services.on_demand VERB HOME TIER ...`` (the control
  plane, in a short-lived child process) and reads its one JSON line; the read-only
  questions (does it run? is it still that process?) are answered here from the pid files
  and process markers, which is all they need.
- ``services.on_demand.LocalLauncher``, the control plane's own (what that child runs,
  with the same primitives as `up`, `down` and the watchdog).

So the front door process never imports ``services`` at all, and `status`, `down` and the
watchdog see a tier the front door started exactly as one `up` started.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, cast

from mlx_stack.system import pidfile
from mlx_stack.system.fs import atomic_write
from mlx_stack.system.host import Host, real

if TYPE_CHECKING:
    from mlx_stack.json_types import JSON
    from mlx_stack.paths import Paths

CHILD_MODULE = "mlx_stack.services.on_demand"
CHILD_TIMEOUT_S = 120.0  # a wake waits up to 20 s for the stack lock, then evicts and launches


class NoRoom(Exception):
    """The tier does not fit even after every idle on-demand tier was stopped."""


class CannotStart(Exception):
    """The tier could not be launched (model folder gone, port held, lock busy...)."""


@dataclass
class Woken:
    """A tier an on-demand start brought up (or found running), and the tiers it evicted."""

    pid: int
    start_time: float
    already_running: bool
    evicted: list[str] = field(default_factory=list[str])

    def as_dict(self) -> dict[str, JSON]:
        return {"pid": self.pid, "start_time": self.start_time, "already_running": self.already_running,
                "evicted": list(self.evicted)}


class Launcher(Protocol):
    """What the data plane may do to a tier's processes (``p``: the stack's state folder)."""

    def wake(self, p: Paths, tier: str, evictable: Sequence[str]) -> Woken:
        """Launch ``tier`` (no wait for health) unless it runs, stopping idle on-demand tiers
        of ``evictable`` (in that order) while the memory guard refuses it. Raises
        :class:`NoRoom` or :class:`CannotStart`."""
        ...

    def put_to_sleep(self, p: Paths, tier: str) -> bool:
        """Stop an idle on-demand tier; False when the stack lock is busy (try later)."""
        ...

    def clear_failed_start(self, p: Paths, tier: str) -> None:
        """Stop what a failed start left and drop its pid file (asleep again)."""
        ...

    def is_running(self, p: Paths, tier: str) -> bool: ...

    def process_alive(self, p: Paths, tier: str, pid: int, start_time: float) -> bool: ...

    def reap_children(self) -> None: ...

    def write_state(self, p: Paths, tiers: Mapping[str, Mapping[str, JSON]]) -> None:
        """``run/on-demand.json``: what `status` shows of each on-demand tier."""
        ...


def running_record(p: Paths, service: str, *, adopt: bool = False,
                   host: Host | None = None) -> pidfile.PidRecord | None:
    """The pid record if that process is still the one we started.

    Without a valid pid file (lost, corrupt, stale), a live process marked as this
    service of this state folder is found by its marker; ``adopt`` rewrites the pid
    file for it (callers that change state hold the stack lock).
    """
    h = real(host)
    record = h.read_pid(p.run_dir, service)
    if record is not None and h.is_ours(record):
        return record
    found = h.marked_leader(p.home, service)
    if found is None:
        return None
    port = record.port if record is not None and record.port else _port_in(found.cmdline)
    adopted = pidfile.PidRecord(service, found.pid, found.start_time, found.cmdline, port)
    if adopt:
        h.write_pid(p.run_dir, adopted)
    return adopted


def _port_in(cmdline: tuple[str, ...]) -> int:
    """The ``--port N`` of a command line (LiteLLM's port is chosen at launch), else 0."""
    for flag, value in itertools.pairwise(cmdline):
        if flag == "--port" and value.isdigit():
            return int(value)
    return 0


def process_alive(p: Paths, tier: str, pid: int, start_time: float, *, host: Host | None = None) -> bool:
    """True while that exact process runs: the tier's record (pid file, else its marker)
    still names it, with the identity rule of `status` and `down` (start time and
    command line)."""
    record = running_record(p, tier, host=host)
    return record is not None and record.pid == pid and abs(record.start_time - start_time) < 1.0


def write_state(p: Paths, tiers: Mapping[str, Mapping[str, JSON]]) -> None:
    doc = {"written_at": time.time(), "tiers": {n: dict(v) for n, v in tiers.items()}}
    atomic_write(p.on_demand_state_file, json.dumps(doc, indent=1) + "\n")


class ChildLauncher:
    """The front door's :class:`Launcher` (see the module's doc)."""

    def __init__(self, python: str = sys.executable, timeout: float = CHILD_TIMEOUT_S,
                 host: Host | None = None) -> None:
        self.python = python
        self.timeout = timeout
        self.host = real(host)

    def _run(self, p: Paths, verb: str, *args: str) -> dict[str, object]:
        argv = [self.python, "-m", CHILD_MODULE, verb, str(p.home), *args]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout,
                                 stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CannotStart(f"{verb} did not finish: {exc}") from None
        lines = out.stdout.strip().splitlines()
        try:
            doc: object = json.loads(lines[-1]) if lines else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            last = (out.stderr.strip().splitlines() or ["no output"])[-1]
            raise CannotStart(f"{verb} failed (exit {out.returncode}): {last[:200]}")
        result = cast("dict[str, object]", doc)  # one JSON object from our own child
        error, message = result.get("error"), str(result.get("message") or "")
        if error == "no-room":
            raise NoRoom(message)
        if error is not None:
            raise CannotStart(message)
        return result

    def wake(self, p: Paths, tier: str, evictable: Sequence[str]) -> Woken:
        doc = self._run(p, "wake", tier, *evictable)
        pid, start, evicted = doc.get("pid"), doc.get("start_time"), doc.get("evicted")
        if not isinstance(pid, int) or not isinstance(start, int | float) or not isinstance(evicted, list):
            raise CannotStart(f"wake of {tier}: an answer without its pid")
        return Woken(pid, float(start), doc.get("already_running") is True,
                     [str(v) for v in evicted])  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]

    def put_to_sleep(self, p: Paths, tier: str) -> bool:
        try:
            return self._run(p, "sleep", tier).get("stopped") is True
        except CannotStart:
            return False

    def clear_failed_start(self, p: Paths, tier: str) -> None:
        with contextlib.suppress(CannotStart):
            self._run(p, "clear", tier)

    def is_running(self, p: Paths, tier: str) -> bool:
        return running_record(p, tier, host=self.host) is not None

    def process_alive(self, p: Paths, tier: str, pid: int, start_time: float) -> bool:
        return process_alive(p, tier, pid, start_time, host=self.host)

    def reap_children(self) -> None:
        self.host.reap_children()

    def write_state(self, p: Paths, tiers: Mapping[str, Mapping[str, JSON]]) -> None:
        write_state(p, tiers)
