"""`models --available`: which catalog repos the Hugging Face Hub serves right now.

Asks the hub for each repo's metadata (:func:`mlx_stack.system.hub.repo_status`, a few
requests in parallel). Offline mode or an unreachable hub is one NetworkError (exit 6),
raised at the first failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mlx_stack.core.catalog import CatalogEntry
from mlx_stack.errors import NetworkError


@dataclass(frozen=True)
class RepoStatus:
    model_id: str
    quant: str
    repo: str
    status: str  # "available" | "gated" | "missing"
    downloads: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"model_id": self.model_id, "quant": self.quant, "repo": self.repo, "status": self.status,
                "downloads": self.downloads}


def _offline() -> bool:
    from mlx_stack.system import hub

    return hub.offline()


def _hub_status(repo: str) -> tuple[str, int | None]:
    from mlx_stack.system import hub

    return hub.repo_status(repo, timeout=15)


def check_available(entries: Iterable[CatalogEntry], *,
                    info: Callable[[str], tuple[str, int | None]] | None = None,
                    is_offline: Callable[[], bool] | None = None) -> list[RepoStatus]:
    """The hub status of every repo of ``entries`` (all quantizations)."""
    if (is_offline or _offline)():
        raise NetworkError("cannot query the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE=1)",
                           hint="unset HF_HUB_OFFLINE, or use `mlx-stack models --catalog` (no network)")
    jobs = [(e.id, q, r.repo) for e in entries for q, r in e.repos.items()]
    fetch = info or _hub_status
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda job: fetch(job[2]), jobs))
    return [RepoStatus(mid, q, repo, status, downloads)
            for (mid, q, repo), (status, downloads) in zip(jobs, results, strict=True)]
