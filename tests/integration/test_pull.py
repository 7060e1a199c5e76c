"""`mlx-stack pull` for real (a subprocess) against a local stand-in of the hub.

huggingface_hub reads HF_ENDPOINT when it is imported, so each pull runs the real
CLI in a subprocess with the environment set. The fake hub only injects faults.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlx_stack.paths import Paths
from mlx_stack.services.demo_models import build_random_model
from mlx_stack.services.local_models import list_local_models
from tests.fakehub import FakeHub, FakeRepo
from tests.helpers import cli_command, free_port, hub_env

pytestmark = pytest.mark.integration

BIG = 24 * 1024 * 1024  # over huggingface_hub's 10 MB read chunk, so a cut lands mid-file
QUANTIZED = b'{"model_type": "qwen2", "quantization": {"bits": 4, "group_size": 64}}'


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def hub(tiny: Path) -> Iterator[FakeHub]:
    big = os.urandom(BIG)
    with FakeHub() as h:
        h.repos["org/tiny"] = FakeRepo.from_dir(tiny)
        h.repos["org/cut"] = FakeRepo(files={"config.json": QUANTIZED, "model.safetensors": big},
                                      cut_once={"model.safetensors"})
        h.repos["org/gated"] = FakeRepo.from_dir(tiny, gated=True, tokens={"hf_accepted"})
        h.repos["org/huge"] = FakeRepo.from_dir(tiny, claimed_size={"model.safetensors": 1000 * 1024**4})
        yield h


@pytest.fixture
def cli(hub: FakeHub, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = hub_env(hub.url, tmp_path / "hf")

    def run(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cli_command(*args), env={**env, **(extra_env or {})}, capture_output=True,
                              text=True, timeout=120)

    return run


def _cache(tmp_path: Path, repo: str) -> Path:
    return tmp_path / "hf" / "hub" / ("models--" + repo.replace("/", "--"))


def test_full_pull_then_listed_and_reused(cli, hub: FakeHub, tiny: Path, tmp_path: Path,
                                          isolated_home: Paths) -> None:
    r = cli("pull", "org/tiny", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    path = Path(out["path"])
    assert path == _cache(tmp_path, "org/tiny") / "snapshots" / ("a" * 40)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (path / name).read_bytes() == (tiny / name).read_bytes()
    assert out["revision"] == "a" * 40 and out["size_bytes"] > 0
    assert "downloading org/tiny" in r.stderr

    listed = list_local_models(isolated_home, hf_cache_dir_override=tmp_path / "hf" / "hub", model_dirs=[])
    assert [m.id for m in listed if m.source == "hf-cache"] == ["org/tiny"]
    assert "org/tiny" in isolated_home.pulled_file.read_text()

    before = len(hub.gets("org/tiny/resolve/" + "a" * 40 + "/model.safetensors"))
    again = cli("pull", "org/tiny")
    assert again.returncode == 0, again.stderr
    assert "already on disk" in again.stderr
    assert len(hub.gets("org/tiny/resolve/" + "a" * 40 + "/model.safetensors")) == before


def test_transfer_cut_midway_resumes_with_a_range_request(cli, hub: FakeHub, tmp_path: Path) -> None:
    r = cli("pull", "org/cut", "--json")
    assert r.returncode == 0, r.stderr
    ranges = hub.gets("org/cut/resolve/" + "a" * 40 + "/model.safetensors")
    assert ranges[0] is None and len(ranges) == 2
    assert ranges[1] is not None and int(ranges[1].removeprefix("bytes=").rstrip("-")) > 0
    data = (Path(json.loads(r.stdout)["path"]) / "model.safetensors").read_bytes()
    expected = hub.repos["org/cut"].files["model.safetensors"]
    assert hashlib.sha256(data).digest() == hashlib.sha256(expected).digest()
    assert json.loads(r.stdout)["quant"] == "int4"


def test_ctrl_c_records_nothing_and_the_next_pull_reuses_finished_files(
        cli, hub: FakeHub, tmp_path: Path, isolated_home: Paths) -> None:
    hub.repos["org/stall"] = FakeRepo(files={"config.json": QUANTIZED, "model.safetensors": os.urandom(BIG)},
                                      stall={"model.safetensors"})
    hub.stalled.clear()
    hub.release.clear()
    env = hub_env(hub.url, tmp_path / "hf")
    proc = subprocess.Popen(cli_command("pull", "org/stall"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert hub.stalled.wait(60), "the pull never reached the stalled file"
        deadline = time.monotonic() + 10
        while not hub.gets("/config.json") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
        hub.release.set()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "again to resume" in err
    assert not isolated_home.pulled_file.exists()

    hub.repos["org/stall"].stall.clear()
    config_gets = len(hub.gets("org/stall/resolve/" + "a" * 40 + "/config.json"))
    r = cli("pull", "org/stall")
    assert r.returncode == 0, r.stderr
    assert len(hub.gets("org/stall/resolve/" + "a" * 40 + "/config.json")) == config_gets  # reused
    assert "org/stall" in isolated_home.pulled_file.read_text()


def test_gated_repo_needs_a_token_with_access(cli, hub: FakeHub, isolated_home: Paths) -> None:
    r = cli("pull", "org/gated")
    assert r.returncode == 6
    assert "org/gated is gated: accept its license" in r.stderr and "HF_TOKEN" in r.stderr
    assert "Traceback" not in r.stderr
    assert not hub.gets("org/gated/resolve/" + "a" * 40 + "/config.json")  # refused before any file

    r = cli("pull", "org/gated", extra_env={"HF_TOKEN": "hf_not_accepted"})  # the hub answers 403
    assert r.returncode == 6, r.stderr
    assert "is gated" in r.stderr
    assert not isolated_home.pulled_file.exists()

    r = cli("pull", "org/gated", extra_env={"HF_TOKEN": "hf_accepted"})
    assert r.returncode == 0, r.stderr
    assert "org/gated" in isolated_home.pulled_file.read_text()


def test_gated_401_from_the_file_endpoint_is_explained(cli, hub: FakeHub, tiny: Path,
                                                       isolated_home: Paths) -> None:
    # The info endpoint does not announce the gate; the file endpoint answers 401 GatedRepo.
    hub.repos["org/quietly-gated"] = FakeRepo.from_dir(tiny, gated=True, announce_gated=False)
    r = cli("pull", "org/quietly-gated")
    assert r.returncode == 6, r.stderr
    assert "org/quietly-gated is gated: accept its license" in r.stderr
    assert not isolated_home.pulled_file.exists()


def test_no_network_is_one_line_exit_6_and_nothing_registered(cli, tmp_path: Path,
                                                              isolated_home: Paths) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    r = cli("pull", "org/tiny", extra_env={"HF_ENDPOINT": closed})
    assert r.returncode == 6
    lines = r.stderr.splitlines()
    assert lines[0] == f"error: cannot reach the Hugging Face Hub at {closed} to fetch org/tiny"
    assert len(lines) == 2 and lines[1].startswith("hint:")
    assert not isolated_home.pulled_file.exists()
    assert not (_cache(tmp_path, "org/tiny") / "snapshots").exists()


def test_offline_with_a_complete_copy_uses_it(cli, tmp_path: Path, isolated_home: Paths) -> None:
    assert cli("pull", "org/tiny").returncode == 0
    isolated_home.pulled_file.unlink()
    r = cli("pull", "org/tiny", "--json", extra_env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert "using the complete copy already on disk" in r.stderr
    assert "org/tiny" in isolated_home.pulled_file.read_text()
    r = cli("pull", "org/cut", extra_env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 6 and "offline mode is on (HF_HUB_OFFLINE=1)" in r.stderr


def test_not_enough_disk_is_exit_5_before_any_download(cli, hub: FakeHub, isolated_home: Paths) -> None:
    r = cli("pull", "org/huge")
    assert r.returncode == 5
    assert "not enough disk space for org/huge: it needs 1000.0 TB (+512 MB headroom)" in r.stderr
    assert "model-dir" in r.stderr
    assert not hub.gets("org/huge/resolve/" + "a" * 40 + "/config.json")
    assert not isolated_home.pulled_file.exists()


def test_model_dir_gets_a_plain_folder(cli, tmp_path: Path, tiny: Path, isolated_home: Paths) -> None:
    (tmp_path / "models").mkdir()  # model-dir must be an existing folder
    assert cli("config", "set", "model-dir", str(tmp_path / "models")).returncode == 0
    r = cli("pull", "org/tiny", "--json")
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "models" / "org--tiny"
    assert Path(json.loads(r.stdout)["path"]) == folder
    assert (folder / "model.safetensors").read_bytes() == (tiny / "model.safetensors").read_bytes()
    listed = list_local_models(isolated_home, include_hf_cache=False)
    assert [m.id for m in listed if m.path == folder] == ["org/tiny"]


def test_unknown_repo_is_exit_4(cli) -> None:
    r = cli("pull", "org/nope")
    assert r.returncode == 4
    assert "no model repo org/nope on the hub" in r.stderr
