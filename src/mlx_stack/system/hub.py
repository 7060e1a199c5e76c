"""The Hugging Face Hub: repo metadata, downloads and the local cache.

Repo metadata and downloads for ``pull`` and ``setup``, the availability check of
``models --available`` (:func:`repo_status`), the cache scan of ``services.local_models``
(:func:`cached_models`), and the one place that reads the hub's settings
from the environment (:func:`home_dir`, :func:`cache_dir`, :func:`offline`,
:func:`service_env`) the way the library does. Downloads go through
``snapshot_download`` (the Hugging Face cache layout, or a plain folder for
``model-dir``), so files a user already has are reused and a transfer cut
midway is resumed by the library with a ``Range`` request. Every library
exception leaves here as one of our errors: gated -> exit 6 with what to do,
unreachable/offline -> exit 6, unknown repo -> exit 4.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mlx_stack.errors import MlxStackError, NetworkError, NotFoundError, UsageError

REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# huggingface_hub's own rule (validate_repo_id), checked here so it never raises later:
# each part 1-96 ASCII word characters, '.' or '-', starting and ending with a word
# character; no '--' or '..'; not ending in '.git'.
_HUB_PART = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$", re.ASCII)
_STALE_PARTIAL_S = 120.0  # a leftover partial file untouched this long belongs to no live download


class GatedError(NetworkError):
    """A gated model and no token (or a token without access): exit 6."""


def gated_error(repo_id: str) -> GatedError:
    return GatedError(
        f"{repo_id} is gated: accept its license at {endpoint()}/{repo_id}, then set HF_TOKEN",
        hint="create a read token at https://huggingface.co/settings/tokens and "
        "`export HF_TOKEN=hf_...` (or run `hf auth login`)",
    )


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    blob: str  # the cache's blob name: the LFS sha256, or the git blob id for small files


@dataclass(frozen=True)
class RemoteRepo:
    repo_id: str
    revision: str  # the commit sha the files come from
    gated: bool
    files: tuple[RemoteFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def token() -> str | None:
    """The user's Hugging Face token (``HF_TOKEN`` or ``hf auth login``), if any."""
    from huggingface_hub import get_token

    return get_token()


# The hub's settings, read from the environment when asked (huggingface_hub reads them
# once, at import): the same rules as the library, so `status` and `doctor` need not
# import it, and a value an empty variable would give counts as unset.
_TRUE = ("1", "true", "yes", "on")


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(os.path.expandvars(os.path.expanduser(value))) if value else None


def home_dir() -> Path:
    """``HF_HOME``, else ``$XDG_CACHE_HOME/huggingface``, else ``~/.cache/huggingface``."""
    xdg = _env_path("XDG_CACHE_HOME") or Path.home() / ".cache"
    return _env_path("HF_HOME") or xdg / "huggingface"


def cache_dir() -> Path:
    """The hub cache: ``HF_HUB_CACHE`` (or the older ``HUGGINGFACE_HUB_CACHE``), else
    ``<home_dir>/hub``."""
    return _env_path("HF_HUB_CACHE") or _env_path("HUGGINGFACE_HUB_CACHE") or home_dir() / "hub"


def offline() -> bool:
    """Offline mode: ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is 1/true/yes/on now,
    or was when huggingface_hub was imported."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def service_env() -> dict[str, str]:
    """The hub settings a process started outside this shell (a login service) needs to
    find the same cache: ``HF_HOME`` always, ``HF_HUB_CACHE`` when it is set."""
    env = {"HF_HOME": str(home_dir())}
    if os.environ.get("HF_HUB_CACHE"):
        env["HF_HUB_CACHE"] = os.environ["HF_HUB_CACHE"]
    return env


def valid_repo_id(repo_id: str) -> bool:
    """True if ``repo_id`` is ``org/name`` as the hub (and huggingface_hub) accepts it."""
    parts = repo_id.split("/")
    return (
        len(parts) == 2
        and all(_HUB_PART.match(part) for part in parts)
        and "--" not in repo_id
        and ".." not in repo_id
        and not repo_id.endswith(".git")
        and REPO_RE.match(repo_id) is not None
    )


def check_repo_id(repo_id: str) -> str:
    if not valid_repo_id(repo_id):
        raise UsageError(
            f"invalid hub repo {repo_id!r}: expected org/name",
            hint="e.g. mlx-community/Qwen3-8B-4bit, or a catalog id from `mlx-stack models --catalog`",
        )
    return repo_id


def storage_folder(repo_id: str, cache: Path) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def fetch_repo(
    repo_id: str, *, revision: str | None = None, allow: list[str] | None = None, tok: str | None = None
) -> RemoteRepo:
    """Ask the hub which commit ``revision`` is and which files (with sizes) it holds."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    api = HfApi(token=tok or None)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as exc:
        raise translate(exc, repo_id) from None
    siblings = list(info.siblings or [])
    by_name = {s.rfilename: s for s in siblings}
    wanted = list(filter_repo_objects(items=list(by_name), allow_patterns=allow))
    files: list[RemoteFile] = []
    for name in sorted(wanted):
        s = by_name[name]
        if s.lfs is not None:
            files.append(RemoteFile(name, int(s.lfs.size), s.lfs.sha256))
        else:
            files.append(RemoteFile(name, int(s.size or 0), s.blob_id or ""))
    if not info.sha:
        raise NetworkError(f"the hub at {endpoint()} gave no commit for {repo_id}")
    return RemoteRepo(repo_id, info.sha, bool(info.gated), tuple(files))


def repo_status(repo_id: str, *, timeout: float = 15) -> tuple[str, int | None]:
    """What the hub serves for ``repo_id`` now: ``("available" | "gated", downloads)``, or
    ``("missing", None)`` for an unknown repo and ``("gated", None)`` when the token (if any)
    may not read it. Any other failure is raised as one of our errors (:func:`translate`)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        info = HfApi(token=token() or None).model_info(repo_id, timeout=timeout)
    except GatedRepoError:
        return "gated", None
    except RepositoryNotFoundError:
        return "missing", None
    except Exception as exc:
        raise translate(exc, repo_id) from None
    return ("gated" if info.gated else "available"), info.downloads


@dataclass(frozen=True)
class CachedModel:
    """A model repo in the hub cache, with the snapshot folder of its newest revision."""

    repo_id: str
    snapshot: Path


def cached_models(cache: Path) -> list[CachedModel]:
    """The model repos of the hub cache folder ``cache`` that have a revision, by repo id;
    none when there is no (readable) cache there. Nothing is checked inside the snapshots."""
    if not cache.is_dir():
        return []
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache)
    except (CacheNotFound, OSError):
        return []
    found: list[CachedModel] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        latest = max(repo.revisions, key=lambda r: r.last_modified)
        found.append(CachedModel(repo.repo_id, Path(latest.snapshot_path)))
    return found


def present_bytes(repo: RemoteRepo, *, cache: Path | None, local_dir: Path | None) -> int:
    """Bytes of ``repo`` already on disk (complete files only): what a pull reuses."""
    total = 0
    for f, path in _targets(repo, cache=cache, local_dir=local_dir):
        try:
            if path.stat().st_size == f.size:
                total += f.size
        except OSError:
            pass
    return total


def download(
    repo: RemoteRepo,
    *,
    allow: list[str] | None,
    cache: Path | None,
    local_dir: Path | None,
    tok: str | None,
    force: bool = False,
    on_progress: Callable[[int], None] | None = None,
    poll_s: float = 0.25,
) -> Path:
    """Download ``repo`` at its pinned commit; returns the local folder.

    Runs ``snapshot_download`` in a worker thread while this thread reports the
    bytes on disk (complete and partial files) to ``on_progress``. A
    KeyboardInterrupt propagates at once; the worker is a daemon thread, so the
    caller can leave without waiting for the transfer in flight.
    """
    # its validating decorator leaves the signature partly untyped
    from huggingface_hub import snapshot_download  # pyright: ignore[reportUnknownVariableType]

    _quiet()
    _sweep_stale_partials(repo, cache=cache, local_dir=local_dir)
    done: list[str] = []  # the snapshot's folder, once downloaded
    failed: list[BaseException] = []

    def work() -> None:
        try:
            folder: str = snapshot_download(
                repo.repo_id,
                revision=repo.revision,
                cache_dir=str(cache) if cache is not None else None,
                local_dir=str(local_dir) if local_dir is not None else None,
                allow_patterns=allow,
                token=tok or None,
                force_download=force,
                max_workers=4,
            )
            done.append(folder)
        except BaseException as exc:
            failed.append(exc)

    worker = threading.Thread(target=work, name=f"pull {repo.repo_id}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(poll_s)
        if on_progress is not None:
            on_progress(_bytes_on_disk(repo, cache=cache, local_dir=local_dir))
    if failed:
        raise translate(failed[0], repo.repo_id)
    if cache is not None:
        # Pinned to the commit, the library records no branch ref; record it like a plain
        # download would, so offline look-ups by branch (and other tools) find this snapshot.
        from mlx_stack.system.fs import atomic_write

        atomic_write(storage_folder(repo.repo_id, cache) / "refs" / "main", repo.revision, mode=0o644)
    return Path(done[0])


def cached_snapshot(repo_id: str, *, revision: str | None, cache: Path | None,
                    local_dir: Path | None, allow: list[str] | None) -> Path | None:
    """The complete local copy of ``repo_id`` without touching the network, or None."""
    # its validating decorator leaves the signature partly untyped
    from huggingface_hub import snapshot_download  # pyright: ignore[reportUnknownVariableType]

    _quiet()
    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=str(cache) if cache is not None else None,
            local_dir=str(local_dir) if local_dir is not None else None,
            allow_patterns=allow,
            local_files_only=True,
        )
    except Exception:
        return None
    folder = Path(path)
    return folder if (folder / "config.json").is_file() else None


def disk_free(path: Path) -> int:
    """Free bytes on the filesystem that will hold ``path`` (its first existing parent)."""
    for candidate in [path, *path.parents]:
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return 0


def translate(exc: BaseException, repo_id: str) -> BaseException:
    """Turn a huggingface_hub / httpx exception into one of our one-line errors."""
    import httpx
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    hub = endpoint()
    unreachable = NetworkError(
        f"cannot reach the Hugging Face Hub at {hub} to fetch {repo_id}",
        hint="check your network connection; files already complete are kept, "
        "so running the same command again resumes",
    )
    if isinstance(exc, MlxStackError | KeyboardInterrupt):
        return exc
    if isinstance(exc, GatedRepoError):
        return gated_error(repo_id)
    if isinstance(exc, RevisionNotFoundError):
        return NotFoundError(f"{repo_id} has no such revision on the hub", hint="check the model name")
    if isinstance(exc, RepositoryNotFoundError):
        return NotFoundError(
            f"no model repo {repo_id} on the hub",
            hint="check the spelling; a private repo also needs HF_TOKEN",
        )
    if isinstance(exc, OfflineModeIsEnabled) or (
        isinstance(exc, LocalEntryNotFoundError) and offline()
    ):
        return NetworkError(
            f"offline mode is on (HF_HUB_OFFLINE=1) and {repo_id} is not fully in the cache",
            hint="unset HF_HUB_OFFLINE to download it",
        )
    if isinstance(exc, HfHubHTTPError):
        # typed as always set, but None when the error came without a response
        status = (exc.response.status_code
                  if exc.response is not None else 0)  # pyright: ignore[reportUnnecessaryComparison]
        if status == 401:
            return NetworkError(
                f"the hub refused the token for {repo_id} (401)",
                hint="check HF_TOKEN: create a read token at https://huggingface.co/settings/tokens",
            )
        return NetworkError(f"the hub at {hub} answered {status} for {repo_id}", hint="try again later")
    if isinstance(exc, httpx.HTTPError | LocalEntryNotFoundError | ConnectionError | TimeoutError):
        return unreachable
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return NetworkError(f"a file of {repo_id} arrived incomplete", hint="run the same command again")
    return exc


def _targets(
    repo: RemoteRepo, *, cache: Path | None, local_dir: Path | None
) -> Iterator[tuple[RemoteFile, Path]]:
    for f in repo.files:
        if local_dir is not None:
            yield f, local_dir / f.path
        elif cache is not None:
            yield f, storage_folder(repo.repo_id, cache) / "blobs" / f.blob


def _partials_dir(repo: RemoteRepo, *, cache: Path | None, local_dir: Path | None) -> Path | None:
    if local_dir is not None:
        return local_dir / ".cache" / "huggingface" / "download"
    if cache is not None:
        return storage_folder(repo.repo_id, cache) / "blobs"
    return None


def _partials(folder: Path | None) -> Iterator[Path]:
    if folder is None or not folder.is_dir():
        return
    yield from folder.rglob("*.incomplete")


def _bytes_on_disk(repo: RemoteRepo, *, cache: Path | None, local_dir: Path | None) -> int:
    done = present_bytes(repo, cache=cache, local_dir=local_dir)
    partial = 0
    for p in _partials(_partials_dir(repo, cache=cache, local_dir=local_dir)):
        with contextlib.suppress(OSError):
            partial += p.stat().st_size
    return min(done + partial, repo.size)


def _sweep_stale_partials(repo: RemoteRepo, *, cache: Path | None, local_dir: Path | None) -> None:
    """Remove partial files left by a pull that was killed (no live download writes them)."""
    now = time.time()
    for p in _partials(_partials_dir(repo, cache=cache, local_dir=local_dir)):
        try:
            if now - p.stat().st_mtime > _STALE_PARTIAL_S:
                os.unlink(p)
        except OSError:
            pass


def _quiet() -> None:
    """We draw our own progress bar from the bytes on disk; silence the library's."""
    from huggingface_hub.utils import disable_progress_bars, logging

    disable_progress_bars()
    logging.set_verbosity_error()  # its retry warnings would break our one-line messages


def leave_now(code: int) -> None:
    """Exit at once, without waiting for download threads still in flight.

    Used after Ctrl-C: the library's worker threads would otherwise hold the
    interpreter until their current file finishes. Partial files they leave are
    swept by the next pull of the same model.
    """
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
