"""`setup` downloading through the real CLI (a subprocess) from a local stand-in of the hub.

Covers the zero-config path without a terminal (recommend, download, write the
stack), and that a failed or interrupted setup leaves the previous stack intact.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlx_stack.core.scoring import recommend
from mlx_stack.paths import Paths
from mlx_stack.services import hardware, stack_store
from mlx_stack.services.catalog_store import load_catalog
from mlx_stack.services.demo_models import build_random_model
from tests.fakehub import FakeHub, FakeRepo
from tests.helpers import cli_command, free_port, hub_env

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def hub(tiny: Path) -> Iterator[FakeHub]:
    with FakeHub() as h:
        h.repos["org/tiny"] = FakeRepo.from_dir(tiny)
        yield h


def _env(hub_url: str, tmp_path: Path) -> dict[str, str]:
    return hub_env(hub_url, tmp_path / "hf")


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(*args), env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_without_a_terminal_setup_takes_the_recommendation(hub: FakeHub, tiny: Path, tmp_path: Path,
                                                           isolated_home: Paths) -> None:
    profile = hardware.detect()
    catalog = [e for e in load_catalog() if not e.gated]
    # setup proposes `agent` when it yields a standard tier, else `balanced`
    recs = [recommend(profile, catalog, intent=intent, quant="int4", memory_budget_pct=40, saved={})
            for intent in ("agent", "balanced")]
    assert all(rec.tiers for rec in recs)
    for t in (t for rec in recs for t in rec.tiers):  # the stand-in serves the tiny model under each repo
        hub.repos[t.repo] = FakeRepo.from_dir(tiny)

    r = _run(_env(hub.url, tmp_path), "setup", "--no-start")
    assert r.returncode == 0, r.stderr
    assert "This machine:" in r.stderr and "to download: " in r.stderr
    stack = stack_store.load(isolated_home)
    rec = recs[0] if recs[0].tiers and any(t.name == "standard" for t in recs[0].tiers) else recs[1]
    assert stack.tier_names == [t.name for t in rec.tiers]
    for tier, wanted in zip(stack.tiers, rec.tiers, strict=True):
        assert tier.model == wanted.entry.id
        assert tier.path.startswith(str(tmp_path / "hf" / "hub"))
        assert Path(tier.path, "model.safetensors").is_file()
        assert tier.tool_call_parser == wanted.entry.capabilities.tool_call_parser
    assert "start it with `mlx-stack up`" in r.stderr

    # Again: everything is on disk, nothing is downloaded, the stack stays the same.
    gets = len([x for x in hub.log if x[0] == "GET" and "/resolve/" in x[1]])
    again = _run(_env(hub.url, tmp_path), "setup", "--no-start")
    assert again.returncode == 0, again.stderr
    assert len([x for x in hub.log if x[0] == "GET" and "/resolve/" in x[1]]) == gets
    assert stack_store.load(isolated_home) == stack


def test_failed_download_keeps_the_previous_stack(hub: FakeHub, tiny: Path, tmp_path: Path,
                                                  isolated_home: Paths) -> None:
    env = _env(hub.url, tmp_path)
    assert _run(env, "setup", "--model", str(tiny), "--no-start").returncode == 0
    before = isolated_home.stack_file.read_text()
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    r = _run({**env, "HF_ENDPOINT": closed}, "setup", "--add", "org/tiny", "--as", "extra", "--no-start")
    assert r.returncode == 6
    assert "cannot reach the Hugging Face Hub" in r.stderr
    assert "the previous stack is unchanged; run the same command again to resume" in r.stderr
    assert isolated_home.stack_file.read_text() == before


def test_ctrl_c_during_the_download_keeps_the_previous_stack(hub: FakeHub, tiny: Path, tmp_path: Path,
                                                             isolated_home: Paths) -> None:
    env = _env(hub.url, tmp_path)
    assert _run(env, "setup", "--model", str(tiny), "--no-start").returncode == 0
    before = isolated_home.stack_file.read_text()
    hub.repos["org/slow"] = FakeRepo.from_dir(tiny, stall={"model.safetensors"})
    hub.stalled.clear()
    hub.release.clear()
    proc = subprocess.Popen(cli_command("setup", "--add", "org/slow", "--as", "extra"), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert hub.stalled.wait(120), "setup never reached the download"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        hub.release.set()
    assert proc.returncode == 130, err
    assert "setup interrupted" in err and "the previous stack is unchanged" in err
    assert isolated_home.stack_file.read_text() == before
