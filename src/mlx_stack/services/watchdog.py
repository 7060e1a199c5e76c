"""The watchdog loop: observe -> decide (core.watchdog) -> apply -> sleep.

What should run: every service of stack.yaml that has a pid file. `up` writes
pid files and `down` removes them, so a pid file whose process is gone means
"crashed" (or "the machine rebooted"): the watchdog starts it again. A service
stopped with `down` is left alone. When the watchdog itself stops a wedged
service, it writes the pid record back (its process now dead) so the intent
survives until the restart, exactly as after a crash.

One watchdog at a time: it holds ``run/watchdog.lock`` (flock) while it runs.
It adopts services that already run instead of starting duplicates; starts and
stops hold the stack lock (``run/stack.lock``) briefly, like `up` and `down`.

It writes its view to ``run/watchdog.json`` after every change, for `status`
(see services/watchdog_state.py).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mlx_stack.core.stack import GATEWAY, LITELLM, Stack
from mlx_stack.core.watchdog import (
    Action,
    ActionKind,
    Decision,
    Observation,
    Policy,
    Record,
    State,
    decide,
    probe_due,
)
from mlx_stack.errors import ConflictError, MlxStackError
from mlx_stack.paths import Paths
from mlx_stack.services.watchdog_state import (
    Written,
    lock_held,
    write_state,
)
from mlx_stack.system.host import Host, real

__all__ = ["LoopState", "Options", "run_loop", "run_round", "serve"]

LOGGED_ENV = "MLX_STACK_WATCHDOG_LOGGED"  # set once output goes through a log writer
STACK_LOCK_TIMEOUT_S = 2.0  # `up` may hold the stack lock for minutes: retry next round
WEDGED_STOP_GRACE_S = 5.0  # a frozen process ignores SIGTERM; SIGKILL comes after this


@dataclass
class Options:
    policy: Policy
    probe_timeout_s: float = 10.0


def log(message: str) -> None:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    sys.stderr.write(f"{stamp} watchdog: {message}\n")
    sys.stderr.flush()


# --- observe ----------------------------------------------------------------------


def _observe_one(p: Paths, stack: Stack, name: str, rec: Record, now: float, opts: Options,
                 start_error: str | None, h: Host) -> Observation:
    from mlx_stack.services import health
    from mlx_stack.services import service_control as sc

    pid_rec = h.read_pid(p.run_dir, name)
    wanted = pid_rec is not None
    alive = pid_rec is not None and h.is_ours(pid_rec)
    if alive and pid_rec is not None:
        broken = sc.missing_ranks(stack, name, pid_rec, host=h)
        if broken is not None and _stop_broken_cluster(p, name, h):
            return Observation(wanted, False, None, broken)  # crashed: restarted after the backoff
    if not alive or pid_rec is None or not probe_due(rec, now, opts.policy):
        return Observation(wanted, alive, None, start_error)
    is_tier = name not in (GATEWAY, LITELLM)
    # The health rule (services/health.py): a tier answers a real completion; the front
    # door and LiteLLM are restarted only when dead, so their liveness route is enough.
    target = sc.health_target(p, stack, name, completion=is_tier, host=h)
    counted = is_tier and rec.state is not State.STARTING
    before = h.vllm_counters(target.url, timeout=1.0) if counted else None
    cpu0 = h.cpu_seconds(pid_rec.pid)
    t0 = h.monotonic()
    result = health.check(target, opts.probe_timeout_s, h).result
    probe_s = h.monotonic() - t0
    if result.ok:
        return Observation(wanted, True, True, probe_s=probe_s)
    # Busy or wedged (core/watchdog.py): CPU used and tokens made while the probe waited.
    cpu1 = h.cpu_seconds(pid_rec.pid)
    after = h.vllm_counters(target.url, timeout=1.0) if before is not None else None
    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    delta = after.work - before.work if before is not None and after is not None else None
    return Observation(wanted, h.is_ours(pid_rec), False, result.error, probe_s=probe_s,
                       cpu_s=cpu, work_delta=delta, in_flight=after.in_flight if after else None)


def _stop_broken_cluster(p: Paths, name: str, h: Host) -> bool:
    """A cluster tier missing a rank is a crashed tier: stop its whole process group now
    (the launcher and every rank left), keeping the pid file as "should run"; False when
    an `up`/`down` holds the stack lock (looked at again next round)."""
    from mlx_stack.services import service_control as sc

    try:
        with h.lock(p.lock_file, timeout=STACK_LOCK_TIMEOUT_S, what="up/down"):
            record = h.read_pid(p.run_dir, name)
            if record is None:
                return False
            log(f"{name}: a rank is gone; stopping the whole cluster tier to restart it")
            sc.stop_service(p, name, grace=WEDGED_STOP_GRACE_S, host=h)
            h.write_pid(p.run_dir, record)
            return True
    except ConflictError:
        return False


def observe(p: Paths, stack: Stack, records: dict[str, Record], now: float, opts: Options,
            start_errors: dict[str, str], *, host: Host | None = None) -> dict[str, Observation]:
    """Look at every service of the stack, probing those that are due, in parallel."""
    from mlx_stack.services.service_control import services_of

    h = real(host)
    names = services_of(p, stack)
    calls = [(lambda n=n: _safe_observe(p, stack, n, records.get(n, Record(since=now)), now, opts,
                                        start_errors.get(n), h)) for n in names]
    return dict(zip(names, h.in_parallel(calls), strict=True))


def _safe_observe(p: Paths, stack: Stack, name: str, rec: Record, now: float, opts: Options,
                  start_error: str | None, h: Host) -> Observation:
    try:
        return _observe_one(p, stack, name, rec, now, opts, start_error, h)
    except Exception as exc:  # a failed probe must not kill the watchdog: learn nothing this round
        log(f"{name}: could not observe ({type(exc).__name__}: {exc})")
        rec_ = h.read_pid(p.run_dir, name)
        return Observation(rec_ is not None, rec_ is not None and h.is_ours(rec_), None)


# --- apply ------------------------------------------------------------------------


@dataclass
class LoopState:
    """What the loop keeps between rounds."""

    records: dict[str, Record] = field(default_factory=lambda: {})
    start_errors: dict[str, str] = field(default_factory=lambda: {})  # service -> why its last start failed
    waiting_for_lock: set[str] = field(default_factory=lambda: set())  # said "lock busy" for these
    last_written: Written | None = None  # the state file as the last round wrote it


class LockBusy(Exception):
    """The stack lock is held (an `up` or `down` runs): try again next round."""


def _apply_one(p: Paths, stack: Stack, action: Action, h: Host) -> None:
    from mlx_stack.services import service_control as sc

    with contextlib.ExitStack() as held:
        try:
            held.enter_context(h.lock(p.lock_file, timeout=STACK_LOCK_TIMEOUT_S, what="up/down"))
        except ConflictError:
            raise LockBusy() from None
        record = h.read_pid(p.run_dir, action.service)
        if record is None:
            return  # `down` ran meanwhile: not wanted any more
        if action.kind is ActionKind.START:
            sc.start_service(p, action.service, stack=stack, wait=False, host=h)
        elif action.kind is ActionKind.STOP and h.is_ours(record):
            sc.stop_service(p, action.service, grace=WEDGED_STOP_GRACE_S, host=h)
            h.write_pid(p.run_dir, record)  # dead pid: "should run", restarted after the backoff


def apply(p: Paths, stack: Stack, decision: Decision, loop: LoopState, *,
          host: Host | None = None) -> dict[str, Record]:
    """Carry out the actions; ``loop.records`` becomes the records to keep (a start skipped
    for a busy stack lock keeps its old record: it is retried), which are returned."""
    h = real(host)
    before = loop.records
    records = dict(decision.records)
    loop.waiting_for_lock.intersection_update(
        a.service for a in decision.actions if a.kind in (ActionKind.START, ActionKind.STOP))
    for action in decision.actions:
        name = action.service
        if action.kind in (ActionKind.EVENT, ActionKind.CLEAR, ActionKind.FLAPPING):
            word = {"event": "", "clear": "flapping cleared: ", "flapping": "FLAPPING: "}[action.kind.value]
            log(f"{name}: {word}{action.reason}")
            continue
        try:
            if name not in loop.waiting_for_lock:
                log(f"{name}: {action.kind.value} ({action.reason})")
            _apply_one(p, stack, action, h)
            loop.start_errors.pop(name, None)
            loop.waiting_for_lock.discard(name)
        except LockBusy:
            if name not in loop.waiting_for_lock:  # say it once, not every round of a long `up`
                log(f"{name}: stack lock busy (an up/down runs); will retry")
                loop.waiting_for_lock.add(name)
            if name in before:
                records[name] = before[name]
        except MlxStackError as exc:
            loop.start_errors[name] = exc.message
            log(f"{name}: {action.kind.value} failed: {exc.message}")
        except Exception as exc:  # survive: the next round sees the result
            loop.start_errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"{name}: {action.kind.value} failed: {type(exc).__name__}: {exc}")
    loop.records = records
    return records


def tend_log_writers(p: Paths, stack: Stack, *, host: Host | None = None) -> None:
    """A stopped log writer is resumed; a service whose writer is gone is restarted (the
    only way to give it a log again): stopped now, restarted by the next round."""
    from mlx_stack.services import service_control as sc
    from mlx_stack.system import identity

    h = real(host)
    look = h.one_scan()  # every service's writer from one scan of the processes
    for name in stack.services:
        record = h.read_pid(p.run_dir, name)
        if record is None or not h.is_ours(record):
            continue
        state = look.writer_state(p.home, name)
        if state == identity.WRITER_STOPPED:
            resumed = h.resume_writers(p.home, name)
            log(f"{name}: its log writer was stopped (SIGSTOP); resumed {resumed}")
        elif state == identity.WRITER_GONE:
            log(f"{name}: its log writer is gone (the log has stopped): restarting {name}")
            try:
                with h.lock(p.lock_file, timeout=STACK_LOCK_TIMEOUT_S, what="up/down"):
                    sc.stop_service(p, name, grace=WEDGED_STOP_GRACE_S, host=h)
                    h.write_pid(p.run_dir, record)  # dead pid: "should run", restarted next round
            except MlxStackError as exc:
                log(f"{name}: could not restart it: {exc.message}")


# --- the loop -----------------------------------------------------------------------


def run_round(p: Paths, opts: Options, loop: LoopState, *, host: Host | None = None,
              clock: Callable[[], float] | None = None) -> float:
    """One round: observe, decide, apply, write the state file; returns when to wake
    (on ``clock``, the host's monotonic clock by default). Survives its own errors."""
    from mlx_stack.services import stack_store

    h = real(host)
    now_of = clock or h.monotonic
    now = now_of()
    wake = now + opts.policy.interval_s
    try:
        h.reap_children()
        if stack_store.exists(p):
            stack = stack_store.load(p)
            obs = observe(p, stack, loop.records, now, opts, loop.start_errors, host=h)
            now = now_of()  # probes take time; decide with the time they ended
            decision = decide(loop.records, obs, now, opts.policy)
            apply(p, stack, decision, loop, host=h)
            tend_log_writers(p, stack, host=h)
            wake = decision.wake_at
            loop.last_written = write_state(p, loop.records, now, opts.policy, host=h, last=loop.last_written)
    except Exception as exc:  # a vanished or corrupt file, a bug: log it, keep watching
        log(f"round failed: {type(exc).__name__}: {exc}")
        wake = now_of() + min(opts.policy.interval_s, 5.0)
    return wake


def run_loop(p: Paths, opts: Options, stop: threading.Event,
             clock: Callable[[], float] | None = None, *, host: Host | None = None,
             loop: LoopState | None = None) -> None:
    """Observe, decide, apply, sleep, until ``stop`` is set. Survives its own errors."""
    h = real(host)
    now_of = clock or h.monotonic
    state = loop if loop is not None else LoopState()
    while not stop.is_set():
        wake = run_round(p, opts, state, host=h, clock=now_of)
        h.wait(stop, max(0.0, wake - now_of()))


def serve(p: Paths, opts: Options, *, standby: bool = False,
          on_ready: Callable[[], None] | None = None, host: Host | None = None) -> None:
    """Hold the watchdog lock and run the loop until SIGTERM/SIGINT."""
    h = real(host)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log(f"got {h.signal_name(signum)}, stopping (services keep running)")
        stop.set()

    h.on_signals(on_signal)  # SIGTERM and SIGINT
    from mlx_stack.system.dirs import make_private_dirs

    make_private_dirs(p.run_dir)
    with contextlib.ExitStack() as held:
        said = False
        while True:
            try:
                held.enter_context(h.lock(p.watchdog_lock_file, timeout=0, what="watchdog"))
                break
            except ConflictError:
                if not standby:
                    raise ConflictError("a watchdog is already running",
                                        hint="stop it first, or see `mlx-stack install --status`") from None
                if not said:
                    log("another watchdog runs; standing by until it exits")
                    said = True
                if h.wait(stop, 1.0):
                    return
        log(f"watching {p.home} (pid {os.getpid()}, every {opts.policy.interval_s:g} s)")
        if on_ready is not None:
            on_ready()
        try:
            run_loop(p, opts, stop, host=h)
        finally:
            with contextlib.suppress(OSError):
                p.watchdog_state_file.unlink()
            log("stopped")


def log_to_file(p: Paths) -> None:
    """Send our output to ``logs/watchdog.log`` through a rotating log writer."""
    from mlx_stack.services import config
    from mlx_stack.system import logwriter

    try:
        settings = config.load(p)
        max_mb, keep = int(settings.get("log-max-size-mb")), int(settings.get("log-max-files"))
    except MlxStackError:  # a corrupt config.yaml must not keep the watchdog from starting
        max_mb, keep = 50, 5
    logwriter.attach(p.watchdog_log, max_mb * 1024 * 1024, keep)
    os.environ[LOGGED_ENV] = "1"


def spawn_daemon(p: Paths, args: list[str], ready_timeout: float = 10.0, *,
                 host: Host | None = None) -> int:
    """Start ``mlx-stack <args>`` (a foreground watch) detached; return its pid once it holds the lock."""
    h = real(host)
    proc = h.spawn_detached([sys.executable, "-m", "mlx_stack", *args])
    deadline = h.monotonic() + ready_timeout
    while h.monotonic() < deadline:
        if proc.poll() is not None:
            from mlx_stack.errors import ServiceError

            raise ServiceError(f"the watchdog exited at once (code {proc.returncode})",
                               hint=f"see {p.watchdog_log}")
        if lock_held(p.watchdog_lock_file, host=h):
            return proc.pid
        h.sleep(0.1)
    return proc.pid


def ensure_not_running(p: Paths, *, host: Host | None = None) -> None:
    if lock_held(p.watchdog_lock_file, host=host):
        raise ConflictError("a watchdog is already running",
                            hint="`mlx-stack install --status` shows the installed one; stop it first")
