"""What the watchdog measures besides probes: CPU time of a service's processes and
the request/token counters vllm-mlx reports, to tell a busy server from a wedged one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psutil

from mlx_stack.json_types import as_list, as_object, to_int
from mlx_stack.system import probes

_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


def _tree_sum(pid: int, measure: Callable[[psutil.Process], float],
              parents: Mapping[int, int] | None = None) -> float | None:
    """``measure`` summed over ``pid`` and its live descendants (None if ``pid`` is gone).
    ``parents``: the parent pid of each process that may belong to the tree, from a scan
    already made (else psutil reads every process's)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *(root.children(recursive=True) if parents is None else _below(pid, parents))]
    except _GONE:
        return None
    total = 0.0
    for proc in procs:
        with contextlib.suppress(*_GONE):
            total += measure(proc)
    return total


def _below(pid: int, parents: Mapping[int, int]) -> list[psutil.Process]:
    """The descendants of ``pid`` by ``parents`` that still live."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found: list[psutil.Process] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        with contextlib.suppress(*_GONE):
            found.append(psutil.Process(child))
        todo.extend(children.get(child, []))
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by ``pid`` and its live descendants."""
    return _tree_sum(pid, lambda p: sum(p.cpu_times()[:2]))


def tree_rss(pid: int, parents: Mapping[int, int] | None = None) -> int | None:
    """Resident bytes of ``pid`` and its live descendants (None if it is gone); ``parents``:
    see :func:`_tree_sum`."""
    total = _tree_sum(pid, lambda p: p.memory_info().rss, parents)
    return None if total is None else int(total)


@dataclass(frozen=True)
class ServerCounters:
    """vllm-mlx's request and token counters, at one moment."""

    work: int  # tokens generated so far, finished requests plus those in flight
    in_flight: int  # requests running or waiting


def _status(base_url: str, timeout: float) -> object:
    """vllm-mlx's ``/v1/status`` document, or None (through ``system.http_client``: no httpx
    import on the `status` path)."""
    text = probes.fetch_text(base_url.rstrip("/"), "/v1/status", timeout=timeout)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def vllm_counters(base_url: str, timeout: float = 2.0) -> ServerCounters | None:
    """vllm-mlx's ``/v1/status`` counters, or None if it does not answer in time."""
    data = as_object(_status(base_url, timeout))
    if data is None:
        return None
    try:
        live = sum(to_int(r.get("completion_tokens"))
                   for r in map(as_object, as_list(data.get("requests"))) if r is not None)
        work = to_int(data.get("total_completion_tokens")) + live
        in_flight = to_int(data.get("num_running")) + to_int(data.get("num_waiting"))
    except (TypeError, ValueError):
        return None
    return ServerCounters(work, in_flight)


def live_children(pid: int) -> int | None:
    """How many direct children of ``pid`` are alive (not zombies); None if it is gone."""
    try:
        kids = psutil.Process(pid).children()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    alive = 0
    for k in kids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            alive += k.status() != psutil.STATUS_ZOMBIE
    return alive


def reap_children() -> None:
    """Collect exited children (services this process started) so none stays a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            return
        if pid == 0:
            return


def available_memory() -> int:
    """Memory the OS can hand out now without swapping (psutil's ``available``)."""
    return int(psutil.virtual_memory().available)


def metal_active_bytes(base_url: str, timeout: float = 2.0) -> int | None:
    """The Metal active memory a vllm-mlx server reports in ``/v1/status`` (macOS only;
    None where there is no Metal or the server does not answer)."""
    body = as_object(_status(base_url, timeout))
    metal = as_object(body.get("metal")) if body is not None else None
    value = metal.get("active_memory_gb") if metal is not None else None
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return None
    return int(value * 1e9)
