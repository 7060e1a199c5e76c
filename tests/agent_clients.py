"""The real coding agents for tests/integration/test_agent_clients.py.

`.ci/agent-clients` installs Claude Code, Codex CLI and OpenCode from the npm registry
into a cache folder ($MLX_STACK_CI_NPM, default ~/.cache/mlx-stack-ci/npm); `make test`
runs it. :func:`agent_bins` finds them there, running the script when one is missing;
the tests skip (naming why) only when node or npm is not on this machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "agent-clients"
COMMANDS = ("claude", "codex", "opencode")


def npm_prefix() -> Path:
    given = os.environ.get("MLX_STACK_CI_NPM")
    return Path(given) if given else Path.home() / ".cache" / "mlx-stack-ci" / "npm"


@dataclass(frozen=True)
class AgentBins:
    prefix: Path

    def path(self, command: str) -> str:
        return str(self.prefix / "bin" / command)


def agent_bins() -> AgentBins:
    """The installed clients; pytest.skip only when node/npm are absent."""
    missing = [t for t in ("node", "npm") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found: the real agent clients cannot be installed here")
    prefix = npm_prefix()
    if not all((prefix / "bin" / c).exists() for c in COMMANDS):
        subprocess.run(["bash", str(SCRIPT)], check=False, timeout=900)
    absent = [c for c in COMMANDS if not (prefix / "bin" / c).exists()]
    assert not absent, f"{', '.join(absent)} missing from {prefix} after {SCRIPT} (see its output)"
    return AgentBins(prefix)
