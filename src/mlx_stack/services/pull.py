"""`pull`: bring a model's files onto this machine, then record it.

Steps: resolve the name (catalog id or hub repo) -> ask the hub for the commit
and the files -> refuse early when the model is gated and there is no token, or
when the disk is short -> download (reusing what the cache already has) ->
record it in ``pulled.yaml``. Nothing is recorded unless every file arrived.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mlx_stack.core.catalog import CatalogEntry
from mlx_stack.core.units import format_bytes
from mlx_stack.errors import ConflictError, NetworkError, NotFoundError
from mlx_stack.paths import Paths
from mlx_stack.services.pulled_models import PulledModel
from mlx_stack.system import hub

if TYPE_CHECKING:
    from mlx_stack.services.bench import Outcome

# What mlx-lm and vllm-mlx load; leaves out duplicate weights in other formats.
ALLOW = ["*.json", "*.safetensors", "*.py", "*.txt", "*.jinja", "*.jsonl", "*.tiktoken", "tokenizer.model"]
HEADROOM = 512 * 1024**2  # keep this much free after the download

Progress = Callable[[int, int], None]  # (bytes on disk, total bytes)


@dataclass(frozen=True)
class Target:
    model: str  # the catalog id, or the hub repo when the catalog does not know it
    repo: str
    quant: str | None  # the catalog's quantization; None for a repo the catalog does not know
    gated: bool = False  # as the catalog says; the hub has the last word
    entry: CatalogEntry | None = None


@dataclass(frozen=True)
class Plan:
    target: Target
    remote: hub.RemoteRepo
    cache: Path | None
    local_dir: Path | None
    present: int  # bytes already on disk, reused
    free: int

    @property
    def size(self) -> int:
        return self.remote.size

    @property
    def to_fetch(self) -> int:
        return max(self.remote.size - self.present, 0)

    @property
    def dest(self) -> Path:
        if self.local_dir is not None:
            return self.local_dir
        assert self.cache is not None
        return hub.storage_folder(self.remote.repo_id, self.cache)


@dataclass(frozen=True)
class Pulled:
    """What `pull` did: the recorded model, the bytes it fetched (0 when every file was on
    disk or it was recorded offline) and, with `pull --bench`, the benchmark of it."""

    model: PulledModel
    downloaded_bytes: int = 0
    bench: Outcome | None = None

    def with_bench(self, outcome: Outcome) -> Pulled:
        return replace(self, bench=outcome)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {**self.model.as_dict(), "downloaded_bytes": self.downloaded_bytes}
        if self.bench is not None:
            out["bench"] = self.bench.as_dict()
        return out


def resolve(spec: str, quant: str | None = None, default_quant: str = "int4") -> Target:
    """A catalog id (at ``quant``, else the default) or a hub repo ``org/name`` -> what to download.

    An explicit ``quant`` the model does not ship is an error; when only the default is
    missing, the first quantization the catalog has (int4, int8, bf16 order) is used.
    """
    from mlx_stack.services.catalog_store import load_catalog

    catalog = load_catalog()
    if "/" in spec:
        repo = hub.check_repo_id(spec)
        known = catalog.find_repo(repo)
        if known is None:
            return Target(model=repo, repo=repo, quant=None)
        entry, q = known
        return Target(model=entry.id, repo=entry.repos[q].repo, quant=q, gated=entry.gated, entry=entry)
    entry = catalog.get(spec)
    wanted = quant or default_quant
    ref = entry.repo(wanted)
    if ref is None and quant is None:
        ref = next((entry.repos[q] for q in ("int4", "int8", "bf16", *entry.repos) if q in entry.repos), None)
    if ref is None:
        raise NotFoundError(
            f"{entry.id} has no {wanted} build in the catalog",
            hint="available: " + ", ".join(entry.repos) + " (choose with --quant)",
        )
    return Target(model=entry.id, repo=ref.repo, quant=ref.quant, gated=entry.gated, entry=entry)


def destination(p: Paths, repo: str) -> tuple[Path | None, Path | None]:
    """(cache, local_dir): the Hugging Face cache, or ``model-dir/org--name`` when set."""
    from mlx_stack.services import config

    model_dir = config.load(p).get("model-dir")
    if model_dir:
        return None, Path(model_dir).expanduser().absolute() / repo.replace("/", "--")
    return hub.cache_dir(), None


def plan(p: Paths, target: Target, *, force: bool = False,
         disk_free: Callable[[Path], int] = hub.disk_free) -> Plan:
    """Ask the hub what the pull involves; refuse a gated model without a token and a short disk."""
    tok = hub.token()
    if target.gated and not tok:
        raise hub.gated_error(target.repo)
    remote = hub.fetch_repo(target.repo, allow=ALLOW, tok=tok)
    if not remote.files:
        raise NotFoundError(f"{target.repo} holds no model files", hint="is it an MLX model repo?")
    if remote.gated and not tok:
        raise hub.gated_error(target.repo)
    cache, local_dir = destination(p, target.repo)
    present = 0 if force else hub.present_bytes(remote, cache=cache, local_dir=local_dir)
    pl = Plan(target, remote, cache, local_dir, present, 0)
    free = disk_free(pl.dest)
    pl = Plan(target, remote, cache, local_dir, present, free)
    if pl.to_fetch and free < pl.to_fetch + HEADROOM:
        raise ConflictError(
            f"not enough disk space for {target.repo}: it needs {format_bytes(pl.to_fetch)}"
            f" (+{format_bytes(HEADROOM)} headroom), {format_bytes(free)} free at {pl.dest.parent}",
            hint="free some space, or download elsewhere: "
            "`mlx-stack config set model-dir /path/on/a/bigger/disk`",
        )
    return pl


def execute(p: Paths, pl: Plan, *, force: bool = False, on_progress: Progress | None = None) -> PulledModel:
    """Download what is missing, then record the model (only once complete)."""
    total = pl.size

    def report(done: int) -> None:
        if on_progress is not None:
            on_progress(done, total)

    tok = hub.token()
    path = hub.download(pl.remote, allow=ALLOW, cache=pl.cache, local_dir=pl.local_dir, tok=tok,
                        force=force, on_progress=report)
    report(total)
    return _register(p, pl.target, pl.remote.revision, path, total)


def from_cache(p: Paths, target: Target) -> PulledModel | None:
    """Record the complete copy already on disk without the network (offline), or None."""
    cache, local_dir = destination(p, target.repo)
    path = hub.cached_snapshot(target.repo, revision=None, cache=cache, local_dir=local_dir, allow=ALLOW)
    if path is None:
        return None
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    revision = path.name if cache is not None else "local"
    return _register(p, target, revision, path, size)


def pull(p: Paths, spec: str, *, quant: str | None = None, default_quant: str | None = None,
         force: bool = False, on_plan: Callable[[Plan], None] | None = None,
         on_progress: Progress | None = None, on_offline: Callable[[str], None] | None = None,
         disk_free: Callable[[Path], int] = hub.disk_free) -> Pulled:
    """The whole pull. Offline, a model already complete on disk is recorded from there.

    Without ``quant``, a catalog id is pulled at ``default_quant`` (None: the
    ``default-quant`` setting)."""
    if default_quant is None:
        from mlx_stack.services import config

        default_quant = config.load(p).get("default-quant")
    target = resolve(spec, quant, default_quant)
    try:
        pl = plan(p, target, force=force, disk_free=disk_free)
    except NetworkError as exc:
        if force or isinstance(exc, hub.GatedError):
            raise
        cached = from_cache(p, target)
        if cached is None:
            raise
        if on_offline is not None:
            on_offline(exc.message)
        return Pulled(cached)
    if on_plan is not None:
        on_plan(pl)
    return Pulled(execute(p, pl, force=force, on_progress=on_progress), pl.to_fetch)


def _register(p: Paths, target: Target, revision: str, path: Path, size: int) -> PulledModel:
    from mlx_stack.services import pulled_models
    from mlx_stack.services.local_models import quantization_of

    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        raise NotFoundError(
            f"{target.repo} has no readable config.json: not a model mlx-stack can serve",
            hint="pull an MLX model repo, e.g. from https://huggingface.co/mlx-community",
        ) from None
    quant = quantization_of(config) if isinstance(config, dict) else None
    model = PulledModel(target.model, target.repo, revision, str(path), quant or target.quant, size)
    pulled_models.record(p, model)
    return model
