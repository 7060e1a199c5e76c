"""Every on-disk location, resolved in one place from ``MLX_STACK_HOME``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "MLX_STACK_HOME"


@dataclass(frozen=True)
class Paths:
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

    @property
    def pulled_file(self) -> Path:
        """The models `pull` completed: repo, commit, local path (written last, atomically)."""
        return self.home / "pulled.yaml"

    @property
    def generated_dir(self) -> Path:
        """Files rendered from stack.yaml (the LiteLLM config)."""
        return self.home / "generated"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "stack.lock"

    @property
    def config_lock_file(self) -> Path:
        return self.home / ".config.lock"


def paths() -> Paths:
    """The paths for the current environment (re-read each call, cheap)."""
    return Paths.from_env()
