"""Every on-disk location, resolved in one place from ``MLX_STACK_HOME``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "MLX_STACK_HOME"
# File names the front door also needs (it is handed the routes file's path, not a home).
ROUTES_FILE = "front-door.json"  # in generated/
DASHBOARD_CONTEXT_FILE = "dashboard.json"  # in generated/, next to the routes file


@dataclass(frozen=True)
class Paths:
    """Where everything of one state folder lives (``home``: ~/.mlx-stack or MLX_STACK_HOME)."""

    home: Path

    @classmethod
    def from_env(cls) -> Paths:
        raw = os.environ.get(HOME_ENV)
        home = Path(raw).expanduser() if raw else Path.home() / ".mlx-stack"
        return cls(home=home.absolute())

    @property
    def config_file(self) -> Path:
        return self.home / "config.yaml"

    @property
    def stack_file(self) -> Path:
        return self.home / "stack.yaml"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    def secret_file(self, name: str) -> Path:
        return self.secrets_dir / name

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def benchmarks_dir(self) -> Path:
        return self.home / "benchmarks"

    @property
    def models_dir(self) -> Path:
        """Where mlx-stack builds its own models (the demo models)."""
        return self.home / "models"

    def demo_model_dir(self, tier: str) -> Path:
        return self.models_dir / f"demo-{tier}"

    @property
    def prefix_cache_dir(self) -> Path:
        """vllm-mlx's on-disk prefix caches (``--ssd-cache-dir``), one folder per tier."""
        return self.home / "cache" / "prefix"

    def tier_prefix_cache(self, tier: str) -> Path:
        return self.prefix_cache_dir / tier

    @property
    def pulled_file(self) -> Path:
        """The models `pull` completed: repo, commit, local path (written last, atomically)."""
        return self.home / "pulled.yaml"

    @property
    def pulled_lock_file(self) -> Path:
        return self.home / ".pulled.lock"

    @property
    def generated_dir(self) -> Path:
        """Files rendered from stack.yaml (the front door's routes, LiteLLM's config)."""
        return self.home / "generated"

    @property
    def routes_file(self) -> Path:
        """The front door's routes (``services.gateway_config`` writes it)."""
        return self.generated_dir / ROUTES_FILE

    def cluster_hostfile(self, tier: str) -> Path:
        """The hostfile mlx.launch reads for a cluster tier (written at each launch)."""
        return self.generated_dir / f"cluster-{tier}.json"

    @property
    def litellm_config_file(self) -> Path:
        """LiteLLM's config (``services.gateway_config`` writes it)."""
        return self.generated_dir / "litellm.yaml"

    @property
    def dashboard_context_file(self) -> Path:
        """What the dashboard shows beside the counts (``services.dashboard`` writes it)."""
        return self.generated_dir / DASHBOARD_CONTEXT_FILE

    def log_file(self, service: str) -> Path:
        """A service's log (rotated copies sit next to it: ``NAME.log.1.gz``, ...)."""
        return self.logs_dir / f"{service}.log"

    @property
    def watchdog_log(self) -> Path:
        return self.log_file("watchdog")

    @property
    def watchdog_agent_log(self) -> Path:
        """The login agent's own stdout/stderr (launchd or systemd writes it)."""
        return self.logs_dir / "watchdog.agent.log"

    @staticmethod
    def pid_file_in(run_dir: Path, service: str) -> Path:
        """A service's pid file in ``run_dir`` (for code handed a run folder, not a home)."""
        return run_dir / f"{service}.pid"

    def pid_file(self, service: str) -> Path:
        return self.pid_file_in(self.run_dir, service)

    def pid_files(self) -> list[Path]:
        """The pid files in ``run/``, sorted (none without the folder); OSError if unreadable."""
        return sorted(self.run_dir.glob("*.pid")) if self.run_dir.is_dir() else []

    @property
    def watchdog_state_file(self) -> Path:
        return self.run_dir / "watchdog.json"

    @property
    def watchdog_lock_file(self) -> Path:
        return self.run_dir / "watchdog.lock"

    @property
    def on_demand_state_file(self) -> Path:
        return self.run_dir / "on-demand.json"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "stack.lock"

    @property
    def config_lock_file(self) -> Path:
        return self.home / ".config.lock"


def paths() -> Paths:
    """The paths for the current environment (re-read each call, cheap)."""
    return Paths.from_env()
