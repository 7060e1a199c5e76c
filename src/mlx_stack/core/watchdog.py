"""The watchdog's decisions: a pure state machine per service (no I/O, no clock).

The loop (services/watchdog.py) observes each service, calls ``decide`` with the
records it kept from the last round and the current ``time.monotonic()``, applies
the returned actions and sleeps until ``Decision.wake_at``.

States and transitions (one record per service)::

    STOPPED   --wanted, not running------------------> STARTING   (start)
    STOPPED   --wanted, already running--------------> HEALTHY/STARTING (adopt)
    STARTING  --probe ok-----------------------------> HEALTHY
    STARTING  --died, or no ok probe in start_timeout> BACKOFF    (failure)
    HEALTHY   --probe failed, progressing-----------> BUSY
    HEALTHY   --probe failed, no progress-----------> UNHEALTHY
    BUSY/UNHEALTHY --probe ok------------------------> HEALTHY
    UNHEALTHY --wedge_probes stuck probes in a row---> BACKOFF    (stop; failure)
    BUSY      --no ok probe for busy_limit-----------> BACKOFF    (stop; failure)
    any running state --process gone----------------> BACKOFF    (failure)
    BACKOFF   --delay elapsed------------------------> STARTING   (start)
    failure with >= max_restarts restarts in window -> FLAPPING   (mark flapping)
    FLAPPING  --cool-down over-----------------------> STARTING   (clear, start)
    FLAPPING  --running again (`up --tier`)----------> HEALTHY/STARTING (clear)
    any       --not wanted (after `down`)------------> STOPPED

Busy or wedged? A probe is a real one-token completion with a deadline. When it
fails, the service is *busy* if it showed progress *while the probe waited*: its
token counter moved, or its processes used at least ``busy_cpu_fraction`` of a
core during the probe (measured over at least ``min_probe_s``). A stopped
(SIGSTOP) or deadlocked server uses no CPU and produces no token, so its failed
probes count as *stuck*; ``wedge_probes`` stuck probes in a row (re-checked every
``recheck_s``) mean wedged, and it is restarted. A busy server is never
restarted for being slow, unless no probe at all succeeded for ``busy_limit_s``
(a livelock that spins the CPU forever). Measuring during the probe, not since
the previous one, keeps work done before a freeze from passing for progress.

Backoff (like Kubernetes' CrashLoopBackOff): the n-th consecutive failure waits
``restart_delay * 2**(n-1)`` seconds, capped at ``backoff_cap_s``; the count
resets after ``reset_after_s`` of continuous health.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum


class State(StrEnum):
    STOPPED = "stopped"  # not wanted: the watchdog leaves it alone
    STARTING = "starting"  # started (by us or adopted), no successful probe yet
    HEALTHY = "healthy"
    BUSY = "busy"  # probe failed but the server is visibly working
    UNHEALTHY = "unhealthy"  # probe failed with no sign of progress (maybe wedged)
    BACKOFF = "backoff"  # failed; waiting before the next start
    FLAPPING = "flapping"  # failed too often; no restarts until the cool-down ends


@dataclass(frozen=True)
class Policy:
    interval_s: float = 30.0  # time between probes of a running service
    restart_delay_s: float = 5.0  # first backoff delay
    backoff_cap_s: float = 300.0
    reset_after_s: float = 600.0  # continuous health that forgets past failures
    max_restarts: int = 5  # restarts allowed within flap_window_s
    flap_window_s: float = 600.0
    flap_cooldown_s: float = 600.0
    start_timeout_s: float = 300.0  # loading a large model takes minutes
    wedge_probes: int = 3  # stuck probes in a row that mean wedged
    busy_cpu_fraction: float = 0.05  # CPU share of one core that counts as progress
    busy_limit_s: float = 3600.0  # even a busy server must answer a probe this often
    fast_poll_s: float = 1.0  # poll period while a service starts or waits
    min_probe_s: float = 0.5  # a failed probe shorter than this says nothing about CPU use
    liveness_s: float = 2.0  # how often running processes are checked for being alive (cheap)

    @property
    def recheck_s(self) -> float:
        """Time between the probes of a service whose last probe failed."""
        return min(self.interval_s, max(self.fast_poll_s, self.interval_s / 3))

    def backoff(self, failures: int) -> float:
        """Delay before the start that follows the ``failures``-th failure in a row."""
        if failures <= 0:
            return 0.0
        return min(self.backoff_cap_s, self.restart_delay_s * 2 ** min(failures - 1, 30))


@dataclass(frozen=True)
class Observation:
    """What the loop saw of one service just now."""

    wanted: bool  # the stack says it should run (False after `down`)
    alive: bool  # its process is ours and alive
    probe_ok: bool | None = None  # a real completion (gateway: liveness) answered in time
    error: str | None = None  # why the probe or the last start failed
    probe_s: float | None = None  # how long the probe took
    cpu_s: float | None = None  # CPU seconds its processes used while the probe ran
    work_delta: int | None = None  # tokens it generated while the probe ran, if it tells
    in_flight: int | None = None  # requests it is serving, if it tells (diagnostics)


@dataclass(frozen=True)
class Record:
    """What the watchdog remembers about one service between rounds."""

    state: State = State.STOPPED
    since: float = 0.0
    reason: str = ""
    failures: int = 0  # consecutive failures: drives the backoff
    restarts: tuple[float, ...] = ()  # restart times within the flap window
    stuck: int = 0  # stuck probes in a row
    healthy_since: float | None = None
    last_ok: float | None = None  # last successful probe
    next_start: float | None = None  # BACKOFF / FLAPPING: when to start again
    last_probe_at: float | None = None
    probes: int = 0  # probes since the last start (diagnostics)


class ActionKind(StrEnum):
    START = "start"
    STOP = "stop"  # stop a wedged or failed process before it is started again
    FLAPPING = "flapping"  # declare it flapping (log, state file)
    CLEAR = "clear"  # flapping is over
    EVENT = "event"  # nothing to do but worth a log line


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    service: str
    reason: str


@dataclass(frozen=True)
class Decision:
    records: dict[str, Record]
    actions: list[Action] = field(default_factory=list[Action])
    wake_at: float = 0.0  # when the loop should run again


def progressing(obs: Observation, policy: Policy) -> bool:
    """True if the service did work while its failed probe waited (see the module doc)."""
    if obs.work_delta is not None and obs.work_delta > 0:
        return True
    if obs.cpu_s is None or obs.probe_s is None or obs.probe_s < policy.min_probe_s:
        return False
    return obs.cpu_s >= policy.busy_cpu_fraction * obs.probe_s


def probe_due(rec: Record, now: float, policy: Policy) -> bool:
    """Whether the loop should probe this service now (it always checks liveness)."""
    return now >= _next_probe(rec, policy)


def _next_probe(rec: Record, policy: Policy) -> float:
    if rec.last_probe_at is None or rec.state in (State.STOPPED, State.BACKOFF, State.FLAPPING):
        return float("-inf")
    if rec.state is State.STARTING:
        return rec.last_probe_at + policy.fast_poll_s
    if rec.state is State.UNHEALTHY:
        return rec.last_probe_at + policy.recheck_s
    return rec.last_probe_at + policy.interval_s


def decide(
    records: Mapping[str, Record],
    observations: Mapping[str, Observation],
    now: float,
    policy: Policy,
) -> Decision:
    """Next records, actions and wake-up time for every observed service."""
    out: dict[str, Record] = {}
    actions: list[Action] = []
    wake = now + policy.interval_s
    for name, obs in observations.items():
        rec, acts = step(name, records.get(name, Record(since=now)), obs, now, policy)
        out[name] = rec
        actions.extend(acts)
        wake = min(wake, _wake_for(rec, now, policy))
    return Decision(out, actions, wake)


def _wake_for(rec: Record, now: float, policy: Policy) -> float:
    if rec.state in (State.BACKOFF, State.FLAPPING) and rec.next_start is not None:
        return max(now + 0.05, min(rec.next_start, now + policy.interval_s))
    if rec.state is State.STOPPED:
        return now + policy.interval_s
    if rec.state is State.STARTING and rec.last_probe_at is None:
        return now + policy.fast_poll_s
    # Between probes, a cheap liveness check notices a crash within liveness_s.
    return max(now + 0.05, min(_next_probe(rec, policy), now + policy.interval_s, now + policy.liveness_s))


def step(name: str, rec: Record, obs: Observation, now: float, policy: Policy) -> tuple[Record, list[Action]]:
    """One service's transition (pure). Returns the new record and its actions."""
    if not obs.wanted:
        if rec.state is State.STOPPED:
            return rec, []
        return Record(State.STOPPED, now, "not wanted (stopped by the user)"), []

    st = rec.state
    if st is State.FLAPPING:
        if obs.alive:  # someone started it again (`mlx-stack up --tier`): adopt, forget
            new = _adopt(Record(since=now), obs, now, "started by hand while flapping")
            return new, [Action(ActionKind.CLEAR, name, "started again by hand")]
        if rec.next_start is not None and now >= rec.next_start:
            new = replace(rec, state=State.STARTING, since=now, reason="cool-down over",
                          restarts=(now,), next_start=None, stuck=0, probes=0, last_probe_at=None)
            return new, [Action(ActionKind.CLEAR, name, "cool-down over"),
                         Action(ActionKind.START, name, "cool-down over, trying again")]
        return rec, []

    if st is State.BACKOFF:
        if obs.alive:
            return _adopt(rec, obs, now, "found running"), []
        if rec.next_start is None or now >= rec.next_start:
            restarts = (*_in_window(rec.restarts, now, policy), now)
            new = replace(rec, state=State.STARTING, since=now, restarts=restarts, next_start=None,
                          stuck=0, probes=0, last_probe_at=None)
            return new, [Action(ActionKind.START, name, f"restart after: {rec.reason}")]
        return rec, []

    if st is State.STOPPED:
        if obs.alive:
            return _adopt(rec, obs, now, "found running"), []
        new = Record(State.STARTING, now, "wanted but not running", failures=rec.failures)
        return new, [Action(ActionKind.START, name, "wanted but not running")]

    # STARTING, HEALTHY, BUSY, UNHEALTHY: a process should be there.
    if not obs.alive:
        why = "exited while starting" if st is State.STARTING else "exited"
        if obs.error:
            why += f": {obs.error}"
        return _fail(name, rec, now, policy, why, stop=False)
    return _probed(name, rec, obs, now, policy)


def _probed(name: str, rec: Record, obs: Observation, now: float,
            policy: Policy) -> tuple[Record, list[Action]]:
    if obs.probe_ok is None:  # not probed this round: nothing learnt
        return rec, []
    base = replace(rec, last_probe_at=now, probes=rec.probes + 1)
    if obs.probe_ok:
        healthy_since = rec.healthy_since if rec.healthy_since is not None else now
        failures, restarts = rec.failures, rec.restarts
        if now - healthy_since >= policy.reset_after_s:
            failures, restarts = 0, ()
        acts: list[Action] = []
        if rec.state is not State.HEALTHY:
            acts.append(Action(ActionKind.EVENT, name, f"healthy (was {rec.state.value})"))
        new = replace(base, state=State.HEALTHY, since=now if rec.state is not State.HEALTHY else rec.since,
                      reason="", stuck=0, healthy_since=healthy_since, last_ok=now,
                      failures=failures, restarts=restarts)
        return new, acts

    detail = f" ({obs.error})" if obs.error else ""
    if rec.state is State.STARTING:
        if now - rec.since >= policy.start_timeout_s:
            return _fail(name, rec, now, policy,
                         f"not healthy {policy.start_timeout_s:g} s after start{detail}", stop=True)
        return base, []  # still loading: a failed probe is expected

    if progressing(obs, policy):
        last_ok = rec.last_ok if rec.last_ok is not None else rec.since
        if now - last_ok >= policy.busy_limit_s:
            return _fail(name, rec, now, policy,
                         f"busy but no probe answered for {policy.busy_limit_s:g} s{detail}", stop=True)
        acts = [] if rec.state is State.BUSY else [
            Action(ActionKind.EVENT, name, f"busy: probe failed{detail} but the server is working")]
        return replace(base, state=State.BUSY, since=now if rec.state is not State.BUSY else rec.since,
                       reason=f"busy{detail}", stuck=0), acts

    stuck = rec.stuck + 1
    if stuck >= policy.wedge_probes:
        return _fail(name, rec, now, policy,
                     f"wedged: {stuck} probes in a row failed with no progress{detail}", stop=True)
    return replace(base, state=State.UNHEALTHY, since=now if rec.state is not State.UNHEALTHY else rec.since,
                   reason=f"probe failed{detail}, no progress ({stuck}/{policy.wedge_probes})",
                   stuck=stuck, healthy_since=None), [
        Action(ActionKind.EVENT, name, f"probe failed{detail}, no progress ({stuck}/{policy.wedge_probes})")]


def _adopt(rec: Record, obs: Observation, now: float, reason: str) -> Record:
    """Take over a process someone else started, without starting a duplicate."""
    state = State.HEALTHY if obs.probe_ok else State.STARTING
    return replace(rec, state=state, since=now, reason=reason, next_start=None, stuck=0,
                   healthy_since=now if obs.probe_ok else None, last_ok=now if obs.probe_ok else None,
                   last_probe_at=now if obs.probe_ok is not None else None, probes=0)


def _in_window(times: tuple[float, ...], now: float, policy: Policy) -> tuple[float, ...]:
    return tuple(t for t in times if now - t < policy.flap_window_s)


def _fail(name: str, rec: Record, now: float, policy: Policy, why: str,
          stop: bool) -> tuple[Record, list[Action]]:
    failures = rec.failures + 1
    restarts = _in_window(rec.restarts, now, policy)
    acts = [Action(ActionKind.STOP, name, why)] if stop else []
    if len(restarts) >= policy.max_restarts:
        reason = (f"{len(restarts)} restarts in {policy.flap_window_s:g} s, last: {why}; "
                  f"no restart for {policy.flap_cooldown_s:g} s")
        new = replace(rec, state=State.FLAPPING, since=now, reason=reason, failures=failures,
                      restarts=restarts, stuck=0, healthy_since=None,
                      next_start=now + policy.flap_cooldown_s)
        return new, [*acts, Action(ActionKind.FLAPPING, name, reason)]
    delay = policy.backoff(failures)
    new = replace(rec, state=State.BACKOFF, since=now, reason=why, failures=failures, restarts=restarts,
                  stuck=0, healthy_since=None, next_start=now + delay)
    return new, [*acts, Action(ActionKind.EVENT, name, f"{why}; restart in {delay:g} s")]
