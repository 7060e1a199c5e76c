"""Process resource limits: the open-file limit the front door and the tiers run with.

macOS starts processes with a soft limit of 256 open files, a few hundred client and
upstream connections; the hard limit is far above it (often unlimited), and a process
may raise its own soft limit up to the hard one without privileges.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Generator

OPEN_FILES_WANTED = 8192


def raise_open_files(wanted: int = OPEN_FILES_WANTED) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE toward ``wanted``, capped at the hard limit;
    never lower it. Returns (soft before, soft after). Never fails: when the system refuses
    (OSError, or ValueError, as macOS does past kern.maxfilesperproc) the limit stays as it
    was. Children inherit the raised limit (set it before spawning them)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return (-1, -1)
    if soft == resource.RLIM_INFINITY:
        return (soft, soft)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target <= soft:
        return (soft, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        return (soft, soft)
    return (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


@contextlib.contextmanager
def open_files_kept() -> Generator[None]:
    """Import code that lowers RLIMIT_NOFILE at import time with the limit left alone.

    mlx_lm (0.31) sets it to (2048, 4096) when ``mlx_lm.utils`` is imported: a lowered hard
    limit cannot be raised again without privileges, and every process this one starts
    afterwards (`setup --demo` builds the demo models, then starts the front door) would
    inherit it. Inside this block, calls that change the open-file limit do nothing."""
    real = resource.setrlimit

    def keep(which: int, limits: tuple[int, int]) -> None:
        if which != resource.RLIMIT_NOFILE:
            real(which, limits)

    resource.setrlimit = keep
    try:
        yield
    finally:
        resource.setrlimit = real
