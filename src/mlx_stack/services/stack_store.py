"""Load and save ``stack.yaml`` (atomically; a corrupt file is a StateError naming it)."""

from __future__ import annotations

from mlx_stack.core.stack import Stack, dump_stack, parse_stack
from mlx_stack.core.yaml_text import parse_yaml
from mlx_stack.errors import NotFoundError
from mlx_stack.paths import Paths
from mlx_stack.system.fs import atomic_write, is_present, read_state_text

_HEADER = (
    "# mlx-stack: what runs. Written by `mlx-stack setup`; read by up/down/status.\n"
    "# Secrets never live here (see ~/.mlx-stack/secrets).\n"
)


def exists(p: Paths) -> bool:
    """False only when there is no stack.yaml: one that cannot be read (a symlink loop,
    no permission) counts as there, so load() says what is wrong."""
    return is_present(p.stack_file)


def load(p: Paths) -> Stack:
    """The configured stack; NotFoundError when there is none yet."""
    path = p.stack_file
    hint = "fix the file by hand, or write a new one with `mlx-stack setup`"
    text = read_state_text(path, hint)
    if text is None:
        raise NotFoundError(
            "no stack configured yet",
            hint="run `mlx-stack setup` (or `mlx-stack setup --demo` to try it with tiny models)",
        )
    data = _parsed(p, text)
    if data is not None:
        return with_hostfiles(parse_stack(data, str(path)))
    data = parse_yaml(text, str(path), hint=hint)
    kept = json_copy(data)  # (parse_stack is given the YAML's own objects)
    stack = with_hostfiles(parse_stack(data, str(path)))
    if kept is not None:  # only a stack that loads is kept: a refused command writes nothing
        _remember(p, text, kept)
    return stack


# stack.yaml's text beside what it parsed to, as JSON: a load whose text is the very same
# takes the JSON and skips importing PyYAML (~30 ms of every `mlx-stack status`).
PARSED_FILE = "stack.yaml.json"


def _parsed(p: Paths, text: str) -> object | None:
    import json

    from mlx_stack.errors import MlxStackError
    from mlx_stack.system.fs import read_state_bytes

    try:
        raw = read_state_bytes(p.generated_dir / PARSED_FILE, hint="")  # (a fifo never hangs it)
        kept = json.loads(raw) if raw is not None else None
    except (MlxStackError, OSError, ValueError):
        return None
    return kept.get("data") if isinstance(kept, dict) and kept.get("text") == text else None


def json_copy(data: object) -> object | None:
    """``data`` through JSON, when JSON holds it unchanged; else None."""
    import json

    try:
        copied = json.loads(json.dumps(data))
    except (TypeError, ValueError):  # a date or a set in hand-written YAML: not for JSON
        return None
    return copied if copied == data else None  # (a number as a mapping key would come back text)


def _remember(p: Paths, text: str, data: object) -> None:
    """Keep what ``text`` parsed to (``data``: JSON's own objects), best effort."""
    import contextlib
    import json

    with contextlib.suppress(OSError):
        atomic_write(p.generated_dir / PARSED_FILE, json.dumps({"text": text, "data": data}))


def with_hostfiles(stack: Stack) -> Stack:
    """A cluster tier whose `hosts:` names a hostfile gets that file's hosts (read here,
    checked by ``core.cluster.parse_hostfile``)."""
    if not any(t.cluster is not None and t.cluster.hostfile is not None for t in stack.tiers):
        return stack
    import json
    from dataclasses import replace
    from pathlib import Path

    from mlx_stack.core.cluster import parse_hostfile
    from mlx_stack.errors import StateError

    tiers = list(stack.tiers)
    for i, t in enumerate(tiers):
        if t.cluster is None or t.cluster.hostfile is None:
            continue
        path = Path(t.cluster.hostfile).expanduser()
        hint = f"fix tiers[{i}].hosts in stack.yaml, or write the file with `mlx.distributed_config`"
        text = read_state_text(path, hint)
        if text is None:
            raise StateError(f"hostfile of tier {t.name} not found: {path}", hint=hint)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StateError(f"{path}: not JSON ({exc})", hint=hint) from None
        tiers[i] = replace(t, cluster=parse_hostfile(t.cluster, data, str(path)))
    return replace(stack, tiers=tuple(tiers))


def save(p: Paths, stack: Stack) -> None:
    """Write stack.yaml atomically. Callers that change a live stack hold paths.lock_file."""
    import yaml

    parse_stack(dump_stack(stack), str(p.stack_file))  # never write what we could not read back
    text = _HEADER + yaml.safe_dump(dump_stack(stack), sort_keys=False)
    atomic_write(p.stack_file, text)
    kept = json_copy(parse_yaml(text, str(p.stack_file), hint=""))
    if kept is not None:
        _remember(p, text, kept)
