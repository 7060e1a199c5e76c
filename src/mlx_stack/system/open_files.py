"""The process's open-file limit (RLIMIT_NOFILE), raised for servers that hold many sockets."""

from __future__ import annotations

UNLIMITED = 2**31 - 1


def raise_open_files(wanted: int = 8192) -> tuple[int, int]:
    """Raise the soft limit toward ``wanted`` (never past the hard limit); (before, after).
    Never fails: where the limit cannot be read or changed it is left as it is."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return 0, 0
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return 0, 0
    if soft == resource.RLIM_INFINITY:
        return UNLIMITED, UNLIMITED
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):  # macOS refuses above kern.maxfilesperproc
            return soft, soft
        return soft, target
    return soft, soft
