"""What `bench TARGET` measures, and the server it talks to.

TARGET is, in this order: a tier of stack.yaml (its running server is used as is),
a model folder on disk, a catalog id or a hub repo that is on this machine (pulled,
or in the Hugging Face cache). A folder or a model is served by a temporary
vllm-mlx on a free port, with the same command line as a tier, and stopped
afterwards whatever happens (error, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlx_stack.core.stack import Stack, Tier
from mlx_stack.errors import ConflictError, NotFoundError, ServiceError, UsageError
from mlx_stack.paths import Paths

if TYPE_CHECKING:
    from mlx_stack.core.catalog import CatalogEntry
    from mlx_stack.system.host import Host

TEMP_SERVICE = "bench-server"  # its log: logs/bench-server.log
START_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Target:
    text: str  # what the user typed
    kind: str  # "tier" | "path" | "catalog"
    model: str  # the key results are saved under: catalog id, hub repo, or local:<folder>
    path: Path | None = None  # the folder to serve (path/catalog)
    tier: Tier | None = None  # the running tier (tier)
    stack: Stack | None = None
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    quant: str | None = None


@dataclass(frozen=True)
class Server:
    base_url: str  # ends in /v1
    model_name: str  # what requests ask for
    pid: int | None  # the server process, for its memory; None if unknown
    temporary: bool


def _hf_repo_of(path: Path) -> str | None:
    """``.../models--org--name/snapshots/<sha>`` -> ``org/name``."""
    for part in reversed(path.resolve().parts):
        if part.startswith("models--") and part.count("--") >= 2:
            return part[len("models--"):].replace("--", "/", 1)
    return None


def identify(p: Paths, path: Path) -> tuple[str, str | None]:
    """(model key, quant) a measurement of the folder ``path`` is saved under.

    The key is what the recommender knows: the catalog id when the folder is a pulled
    copy or a Hugging Face cache snapshot of a catalog repo, else the hub repo, else
    ``local:<folder name>``.
    """
    from mlx_stack.services import bench_reference, local_models, pulled_models

    resolved = path.resolve()
    repo = None
    for m in pulled_models.load(p):
        if Path(m.path).resolve() == resolved:
            repo = m.repo
    repo = repo or _hf_repo_of(resolved)
    if repo is not None:
        found = bench_reference.catalog_for_repo(repo)
        if found is not None:
            return found
        return repo, _quant_of(resolved, local_models.read_model_folder)
    return f"local:{resolved.name}", _quant_of(resolved, local_models.read_model_folder)


def _quant_of(folder: Path, read_model_folder: Callable[[Path], tuple[int, str | None] | None]) -> str | None:
    seen = read_model_folder(folder)
    return seen[1] if seen else None


def _local_copy(p: Paths, ids: list[str]) -> Path | None:
    """The folder of the first of ``ids`` (catalog id or repos) that is on disk."""
    from mlx_stack.services import local_models, pulled_models

    for spec in ids:
        found = pulled_models.find(p, spec)
        if found is not None:
            return Path(found.path)
    by_id = {m.id: m.path for m in local_models.list_local_models(p)}
    for spec in ids:
        if spec in by_id:
            return by_id[spec]
    return None


def resolve(p: Paths, text: str) -> Target:
    """Tier name, model folder, catalog id or hub repo -> :class:`Target`."""
    from mlx_stack.services import bench_reference, local_models, stack_store

    if stack_store.exists(p):
        stack = stack_store.load(p)
        if text in stack.tier_names:
            tier = stack.tier(text)
            quant = identify(p, Path(tier.path))[1] if Path(tier.path).is_dir() else None
            return Target(text, "tier", tier.model, tier=tier, stack=stack, quant=quant)
    candidate = Path(text).expanduser()
    if candidate.exists():
        if local_models.read_model_folder(candidate) is None:
            raise UsageError(
                f"{text} is not a model folder (it needs config.json and *.safetensors)",
                hint="give the folder of an MLX model, a tier name or a catalog id",
            )
        model, quant = identify(p, candidate)
        return _served(model, candidate.absolute(), "path", text, quant)
    entry = bench_reference.catalog_entry(text)
    if entry is not None:
        path = _local_copy(p, [text, *_repos_by_preference(p, entry)])
        if path is None:
            raise NotFoundError(
                f"{text} is in the catalog but not on this machine",
                hint=f"download it first: `mlx-stack pull {text} --bench`",
            )
        return _served(text, path, "catalog", text, identify(p, path)[1])
    if "/" in text and not text.startswith((".", "/", "~")):
        path = _local_copy(p, [text])
        if path is not None:
            model, quant = identify(p, path)
            return _served(model, path, "catalog", text, quant)
    tiers = ", ".join(stack_store.load(p).tier_names) if stack_store.exists(p) else "none (no stack yet)"
    raise NotFoundError(
        f"unknown bench target {text!r}: not a tier, a model folder or a model on this machine",
        hint=f"tiers: {tiers}; catalog ids: `mlx-stack models --catalog`; "
             "local models: `mlx-stack models`",
    )


def _repos_by_preference(p: Paths, entry: CatalogEntry) -> list[str]:
    """The entry's repos, the configured default quantization first."""
    from mlx_stack.services import config

    default = config.load(p).get("default-quant")
    quants = sorted(entry.repos, key=lambda q: q != default)
    return [entry.repos[q].repo for q in quants]


def _served(model: str, path: Path, kind: str, text: str, quant: str | None) -> Target:
    """A target served by a temporary server, with the parsers its catalog entry names."""
    from mlx_stack.services import bench_reference

    entry = bench_reference.catalog_entry(model)
    caps = entry.capabilities if entry is not None else None
    return Target(text, kind, model, path=path, quant=quant,
                  tool_call_parser=caps.tool_call_parser if caps else None,
                  reasoning_parser=caps.reasoning_parser if caps else None)


def running_tier(p: Paths, target: Target, *, host: Host | None = None) -> Server:
    """The server of a running tier; ServiceError when the tier is down."""
    from mlx_stack.services import running
    from mlx_stack.system.host import real

    h = real(host)
    assert target.tier is not None and target.stack is not None
    name = target.tier.name
    url = running.base_url(target.stack, name, host=h)
    record = running.running_record(p, name, host=h)
    answering = h.health(url, timeout=3.0, route="/health").ok
    if not answering:
        state = "not running" if record is None else "running but not answering"
        raise ServiceError(
            f"tier {name!r} is {state} (port {target.tier.port})",
            hint=f"start it with `mlx-stack up --tier {name}`, or bench the model itself: "
                 f"`mlx-stack bench {target.tier.model}`",
        )
    pid = record.pid if record is not None else h.port_holder(target.tier.port).pid
    return Server(url + "/v1", name, pid, temporary=False)


class Interrupted(BaseException):
    """SIGTERM during a benchmark: unwinds like Ctrl-C so the temporary server is stopped."""


@contextlib.contextmanager
def temporary_server(p: Paths, target: Target, *, port: int | None = None,
                     timeout_s: float = START_TIMEOUT_S, host: Host | None = None) -> Iterator[Server]:
    """A vllm-mlx serving ``target.path`` on ``port`` (a free one by default), stopped on exit."""
    from mlx_stack.services import service_control
    from mlx_stack.system.host import real

    h = real(host)
    assert target.path is not None
    if port is None:
        port = h.free_port()
    elif not h.port_is_free(port):
        raise ConflictError(
            f"port {port} is held by {h.port_holder(port).describe()}",
            hint="pick another --port, or leave it out to use a free one",
        )
    tier = Tier(TEMP_SERVICE, target.model, str(target.path), port,
                tool_call_parser=target.tool_call_parser, reasoning_parser=target.reasoning_parser)
    stack = Stack(tiers=(tier,), fallback_order=(TEMP_SERVICE,))
    cmd = service_control.command_for(p, stack, TEMP_SERVICE)
    log = p.log_file(TEMP_SERVICE)
    with h.sigterm_raises(Interrupted):
        pid = h.spawn(cmd.argv, log_file=log, env=cmd.env)
        try:
            record = h.record_for(TEMP_SERVICE, pid, cmd.argv, port)
            try:
                service_control.wait_healthy(p, stack, TEMP_SERVICE, record,
                                             h.monotonic() + timeout_s, host=h)
            except ServiceError as exc:
                raise ServiceError(f"the temporary server for {target.text}: {exc.message}",
                                   hint=f"see {log}") from None
            yield Server(f"http://127.0.0.1:{port}/v1", TEMP_SERVICE, pid, temporary=True)
        finally:
            with h.signals_ignored():  # a second Ctrl-C must not cut the clean-up short
                gone = h.stop_group(pid, grace=10.0)
            if not gone:
                raise ServiceError(f"the temporary server (pid {pid}) did not stop",
                                   hint="stop it by hand: kill -9 -" + str(pid))
