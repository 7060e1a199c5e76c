"""Process resource limits: the open-file limit the front door and the tiers run with.

macOS starts processes with a soft limit of 256 open files, a few hundred client and
upstream connections; the hard limit is far above it (often unlimited), and a process
may raise its own soft limit up to the hard one without privileges.
"""

from __future__ import annotations

import resource

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
