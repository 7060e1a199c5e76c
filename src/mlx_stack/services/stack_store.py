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
    data = parse_yaml(text, str(path), hint=hint)
    return parse_stack(data, str(path))


def save(p: Paths, stack: Stack) -> None:
    """Write stack.yaml atomically. Callers that change a live stack hold paths.lock_file."""
    import yaml

    parse_stack(dump_stack(stack), str(p.stack_file))  # never write what we could not read back
    text = _HEADER + yaml.safe_dump(dump_stack(stack), sort_keys=False)
    atomic_write(p.stack_file, text)
