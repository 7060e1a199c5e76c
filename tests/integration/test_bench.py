"""`mlx-stack bench` for real: vllm-mlx on a tiny local model, the real CLI in a subprocess.

The numbers are tiny-model numbers: the assertions check structure, units and sanity
(tokens/s > 0, time to first token < total time), that saved results change the
recommendation, and that no server is ever left running (errors, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from mlx_stack.core import scoring
from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import bench_store, catalog_store, hardware, running, service_control, stack_store
from mlx_stack.services.demo_models import build_random_model
from mlx_stack.system import ports
from tests.helpers import cli_command, cli_env, hub_env, processes_naming

pytestmark = pytest.mark.integration

REPO = "mlx-community/Qwen3-0.6B-4bit"  # a catalog repo; the tiny model stands in for it


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face cache holding the tiny model as the snapshot of a catalog repo."""
    home = tmp_path_factory.mktemp("hf")
    repo_dir = home / "hub" / ("models--" + REPO.replace("/", "--"))
    build_random_model(repo_dir / "snapshots" / "0123abc", context_length=8192)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("0123abc")
    return home


@pytest.fixture(scope="module")
def folder_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_model(tmp_path_factory.mktemp("models") / "tiny-folder", seed=1)


@pytest.fixture
def env(hf_home: Path, isolated_home: Paths) -> dict[str, str]:
    return {**os.environ, "HF_HOME": str(hf_home), "MLX_STACK_HOME": str(isolated_home.home),
            "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}


def _bench(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlx_stack", "bench", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _servers_of(path: Path) -> list[int]:
    """Live processes whose command line names ``path`` (a model folder)."""
    return [proc.pid for proc in processes_naming(path)]


def test_running_tier_is_measured_and_left_running(env, hf_home: Path, isolated_home: Paths):
    snapshot = next((hf_home / "hub").glob("models--*/snapshots/*"))
    stack = Stack((Tier("fast", "qwen3-0.6b", str(snapshot), ports.free_port()),), ("fast",),
                  Gateway("127.0.0.1", ports.free_port()))
    stack_store.save(isolated_home, stack)
    record = service_control.start_service(isolated_home, "fast", stack=stack, timeout=120)
    try:
        r = _bench(env, "fast", "--iterations", "1", "--prompts", "1", "--max-tokens", "8",
                   "--concurrency", "1,2")
        assert r.returncode == 0, r.stderr[-3000:]
        out = r.stdout
        assert "qwen3-0.6b on " in out
        for line in ("generation tok/s", "prompt tok/s", "peak memory (GB)", "time to first token",
                     "thresholds: speeds PASS >= 80%", "all streams together"):
            assert line in out
        chart = [ln for ln in out.splitlines() if ln.startswith(("1 |", "2 |"))]
        assert len(chart) == 2 and "█" in chart[0]
        assert f"tier fast at http://127.0.0.1:{stack.tiers[0].port}/v1" in r.stderr
        assert running.running_record(isolated_home, "fast") is not None  # not stopped
        assert psutil.pid_exists(record.pid)
    finally:
        service_control.stop_service(isolated_home, "fast", grace=5)
    assert _servers_of(snapshot) == []


class _Lines:
    """Collects a child's stderr lines in a thread, to wait for one with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stderr is not None
        threading.Thread(target=lambda: [self.lines.put(ln) for ln in proc.stderr or []],
                         daemon=True).start()

    def wait_for(self, text: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return
        pytest.fail(f"no {text!r} in time:\n" + "".join(self.seen)[-3000:])

    def drain(self) -> str:
        """Everything seen, once the child has exited (its stream then ends)."""
        while True:
            try:
                self.seen.append(self.lines.get(timeout=1))
            except queue.Empty:
                return "".join(self.seen)


def _kill_leftovers(path: Path) -> None:
    for pid in _servers_of(path):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(("sig", "moment", "by_catalog_id"), [
    (signal.SIGINT, "starting a temporary", True),  # Ctrl-C while the server loads
    (signal.SIGTERM, "iteration 1/", False),  # killed while measuring
])
def test_interrupted_bench_leaves_no_server(env, hf_home: Path, folder_model: Path, sig: int, moment: str,
                                            by_catalog_id: bool):
    # a catalog id found in the Hugging Face cache, or a model folder
    target, folder_model = ("qwen3-0.6b", hf_home) if by_catalog_id else (str(folder_model), folder_model)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlx_stack", "bench", target, "--iterations", "100", "--prompts", "2",
         "--max-tokens", "64"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = _Lines(proc)
        deadline = time.monotonic() + 120
        lines.wait_for(moment, deadline)
        while not _servers_of(folder_model) and time.monotonic() < deadline:
            time.sleep(0.1)
        servers = _servers_of(folder_model)
        assert servers, "the temporary server never started"
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 130
        err = lines.drain()
        assert "bench interrupted" in err, err[-3000:]
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                       for pid in servers)
        assert _servers_of(folder_model) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _kill_leftovers(folder_model)  # never leave one behind, even when the test fails



def test_pull_bench_measures_saves_and_changes_the_recommendation(tmp_path: Path, isolated_home: Paths):
    """`pull --bench` (the default bench settings) from a local stand-in of the hub."""
    from tests.fakehub import FakeHub, FakeRepo

    model = build_random_model(tmp_path / "upload", seed=2, context_length=8192)
    started = time.monotonic()
    with FakeHub() as hub:
        hub.repos[REPO] = FakeRepo.from_dir(model)
        env = hub_env(hub.url, tmp_path / "hf", base=cli_env(isolated_home, NO_COLOR="1"))
        r = subprocess.run(cli_command("pull", "qwen3-0.6b", "--bench", "--json"),
                           env=env, capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - started
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["repo"] == REPO
    data = out["bench"]
    assert (data["model"], data["quant"], data["target_kind"]) == ("qwen3-0.6b", "int4", "path")
    assert data["settings"] == {"iterations": 3, "max_tokens": 128,
                                "prompts": ["short", "code", "summary", "long"]}
    single = data["single_stream"]
    assert single["requests"] == 12
    assert data["gen_tok_s"] > 0 and data["prompt_tok_s"] > 0
    assert 0 < data["ttft_s"] <= single["ttft_max_s"] < single["total_s"] < wall
    assert 0 < single["completion_tokens"] <= 12 * 128
    assert single["prompt_tokens"] > 12 * 20
    # RSS of a vllm-mlx server is about 1 GB (mostly imports): decimal GB, not bytes or MiB
    assert 0.1 < data["peak_memory_gb"] < 16
    assert data["peak_memory_gb"] >= data["peak_rss_gb"] > 0
    assert [lv["streams"] for lv in data["concurrency"]] == [1, 4, 8]
    for lv in data["concurrency"]:
        assert lv["requests"] == lv["streams"] and lv["aggregate_tps"] > 0
        assert 0 < lv["ttft_median_s"] < lv["wall_s"]
    verdicts = {v["metric"]: v for v in data["verdicts"]}
    assert set(verdicts) == {"generation tok/s", "prompt tok/s", "peak memory (GB)"}
    assert verdicts["generation tok/s"]["status"] == "N/A"  # no speed estimate without a bandwidth
    assert verdicts["peak memory (GB)"]["status"] in {"PASS", "WARN", "FAIL"}  # memory is estimated
    assert "120%" in verdicts["peak memory (GB)"]["rule"]
    assert data["reference"]["source"].startswith("estimate for qwen3-0.6b int4")
    assert _servers_of(tmp_path / "hf") == []

    saved_file = Path(data["saved_to"])
    assert saved_file.parent.parent == isolated_home.benchmarks_dir
    profile = hardware.detect()
    saved = bench_store.load_saved(isolated_home, profile)
    assert saved["qwen3-0.6b"].memory_gb == pytest.approx(data["peak_memory_gb"])
    assert saved["qwen3-0.6b"].decode_tok_s == pytest.approx(data["gen_tok_s"])
    # A budget no catalog model fits by its estimate; the measured model fits it.
    budget = int((data["peak_memory_gb"] + 0.5) * 1e9)
    before = scoring.recommend(profile, catalog_store.load_catalog(), budget_bytes=budget)
    after = scoring.recommend(profile, catalog_store.load_catalog(), budget_bytes=budget, saved=saved)
    assert "qwen3-0.6b" not in [t.entry.id for t in before.tiers]
    standard = next(t for t in after.tiers if t.name == "standard")
    assert standard.entry.id == "qwen3-0.6b"
    assert standard.source == "measured (saved benchmark)"
    assert standard.decode_tok_s == pytest.approx(data["gen_tok_s"])
    # and through the command line the user runs
    shown = subprocess.run(
        [sys.executable, "-m", "mlx_stack", "models", "--recommend", "--budget", f"{budget // 1024**2}mb",
         "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    tiers = {t["tier"]: t for t in json.loads(shown.stdout)["tiers"]}
    assert tiers["standard"]["model"] == "qwen3-0.6b"
    assert tiers["standard"]["source"] == "measured (saved benchmark)"
