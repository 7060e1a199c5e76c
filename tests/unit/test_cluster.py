"""The cluster tier's pure parts and doctor's host checks (issue 26)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from mlx_stack.core import cluster
from mlx_stack.core.cluster import Cluster, ClusterHost
from mlx_stack.core.front_door import parse_routes, unanswered_message
from mlx_stack.core.gateway_config import routes_for
from mlx_stack.core.memory_plan import ServingProfile, cluster_guard
from mlx_stack.core.server_cmd import cluster_command
from mlx_stack.core.stack import dump_stack, parse_stack
from mlx_stack.errors import ConflictError, StateError
from mlx_stack.services import doctor, stack_store
from mlx_stack.system.service_manager import RunResult

LOCAL = {"ssh": "127.0.0.1", "ips": ["127.0.0.1"]}
MAC2 = {"ssh": "mac2", "ips": ["10.0.0.2"]}


def doc(**tier: object) -> dict[str, object]:
    base: dict[str, object] = {"name": "big", "model": "org/big", "path": "/models/big", "port": 8100,
                               "engine": "mlx-distributed", "hosts": [LOCAL, MAC2]}
    base.update(tier)
    return {"schema": 1, "tiers": [{k: v for k, v in base.items() if v is not None}]}


# --- config validation ----------------------------------------------------------------


def test_a_cluster_tier_round_trips_and_defaults_to_ring_and_tensor() -> None:
    s = parse_stack(doc(hosts=[LOCAL, {"ssh": "mac2", "ips": ["10.0.0.2"], "memory_gb": 192}]))
    c = s.tiers[0].cluster
    assert c is not None and (c.backend, c.sharding, c.ranks, c.ring_port) == ("ring", "tensor", 2, 32323)
    assert c.hosts[1].memory_gb == 192 and s.tiers[0].engine == "mlx-distributed"
    assert s.tiers[0].served_model == "/models/big"  # mlx_lm.server looks any other name up on the hub
    assert parse_stack(dump_stack(s)) == s
    plain = parse_stack(doc(engine=None, hosts=None))
    assert plain.tiers[0].cluster is None and plain.tiers[0].engine == "vllm-mlx"


@pytest.mark.parametrize(("fields", "message"), [
    ({"backend": "mpi"}, "tiers[0].backend: 'mpi' is not a backend (ring or jaccl)"),
    ({"sharding": "expert"}, "tiers[0].sharding: 'expert' is not a sharding (tensor or pipeline)"),
    ({"hosts": []}, "tiers[0].hosts: expected a non-empty list of hosts"),
    ({"hosts": None}, "tiers[0].hosts: an mlx-distributed tier needs its hosts"),
    ({"hosts": ""}, "tiers[0].hosts: expected a list of hosts or the path of a hostfile"),
    ({"engine": "llama.cpp"}, "tiers[0].engine: 'llama.cpp' is not an engine (vllm-mlx or mlx-distributed)"),
    ({"engine": None}, "tiers[0].hosts: only a tier with `engine: mlx-distributed` has it"),
    ({"hosts": [MAC2, LOCAL]}, "tiers[0].hosts[0].ssh: rank 0 must be this Mac"),
    ({"hosts": [LOCAL, {"ssh": "mac2"}]}, "tiers[0].hosts[1].ips: the ring backend needs the host's address"),
    ({"hosts": [LOCAL, {"ssh": "mac2", "ips": ["10.0.0.2"], "memory_gb": -1}]},
     "tiers[0].hosts[1].memory_gb: must be a positive number"),
    ({"hosts": [LOCAL, {"ssh": "-oProxyCommand=x", "ips": ["1.2.3.4"]}]}, "is not a host name"),
    ({"backend": "jaccl", "hosts": [{"ssh": "localhost", "ips": ["10.0.0.1"], "rdma": [None, "rdma_en2"]},
                                    {"ssh": "mac2", "ips": ["10.0.0.2"], "rdma": ["rdma_en2"]}]},
     "tiers[0].hosts[1].rdma: JACCL needs one RDMA device per host (2), null for itself"),
    ({"ring_port": 8100}, "tiers[0].ring_port: the ring's port 8100 is also used by tiers[0].port"),
    ({"mode": "on-demand"}, "tiers[0].engine: an mlx-distributed tier is a resident chat tier"),
])
def test_bad_cluster_fields_are_named(fields: dict[str, object], message: str) -> None:
    with pytest.raises(StateError) as err:
        parse_stack(doc(**fields))
    assert message in err.value.message


def _load_with_hostfile(tmp_path: Path, content: str) -> object:
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(content)
    return stack_store.with_hostfiles(parse_stack(doc(hosts=str(hostfile))))


def test_a_hostfile_as_mlx_distributed_config_writes_it(tmp_path: Path) -> None:
    written = {"backend": "ring", "envs": ["MLX_METAL_FAST_SYNCH=1"],
               "hosts": [{"ssh": "localhost", "ips": ["10.0.0.1"], "rdma": []},
                         {"ssh": "mac2", "ips": ["10.0.0.2"], "rdma": [], "memory_gb": 64}]}
    s = _load_with_hostfile(tmp_path, json.dumps(written))
    c = s.tiers[0].cluster  # type: ignore[attr-defined]
    assert c.envs == ("MLX_METAL_FAST_SYNCH=1",) and c.hosts[1].memory_gb == 64
    assert dump_stack(s)["tiers"][0]["hosts"] == str(tmp_path / "hosts.json")  # type: ignore[index,call-overload]
    # written for mlx.launch: localhost becomes 127.0.0.1 (the only name it runs without ssh)
    out = json.loads(cluster.hostfile_text(c))
    assert out["hosts"][0]["ssh"] == "127.0.0.1" and out["envs"] == ["MLX_METAL_FAST_SYNCH=1"]


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not JSON"),
    ('{"hosts": []}', "hosts.json: hosts.hosts: expected a non-empty list of hosts"),
    ('{"backend": "jaccl", "hosts": [{"ssh": "localhost", "ips": ["1.1.1.1"]}]}',
     "'jaccl', but the tier says backend: ring"),
    ('[{"ips": ["1.1.1.1"]}]', "hosts.json: hosts[0].ssh"),
])
def test_a_bad_hostfile_is_named(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(StateError) as err:
        _load_with_hostfile(tmp_path, content)
    assert message in err.value.message


def test_a_missing_hostfile_is_named(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="hostfile of tier big not found"):
        stack_store.with_hostfiles(parse_stack(doc(hosts=str(tmp_path / "nope.json"))))


# --- the launch line ------------------------------------------------------------------


def test_the_launch_line() -> None:
    tier = parse_stack(doc(sharding="pipeline", extra_args=["--max-tokens", "64"])).tiers[0]
    tier = replace(tier, serving=ServingProfile(2048, 100, 40, 0.0, 1))
    cmd = cluster_command(tier, Path("/venv/bin"), Path("/venv/bin/python"), Path("/h/cluster-big.json"))
    assert list(cmd.argv) == [
        "/venv/bin/mlx.launch", "--backend", "ring", "--hostfile", "/h/cluster-big.json",
        "--starting-port", "32323", "--python", "/venv/bin/python", "--env", "HF_HUB_OFFLINE=1",
        "--", "-m", "mlx_lm", "server", "--model", "/models/big", "--host", "127.0.0.1", "--port", "8100",
        "--pipeline", "--prompt-cache-bytes", str(40 * 1024 * 1024), "--max-tokens", "64"]
    assert cmd.port == 8100 and cmd.env["HF_HUB_OFFLINE"] == "1"


def test_the_routes_send_the_model_folder_and_say_what_it_answers() -> None:
    s = parse_stack(doc())
    routes = parse_routes(routes_for(s, {"big": 2048}, None))
    big = routes.tiers["big"]
    assert big.sent_model == "/models/big" and big.answers("/v1/chat/completions")
    assert not big.answers("/v1/messages") and not big.answers("/v1/responses")
    msg = unanswered_message("/v1/messages", ("big",), routes)
    assert "tier big answers only /v1/chat/completions, /v1/completions" in msg


# --- memory ---------------------------------------------------------------------------


def test_tensor_splits_evenly_and_pipeline_by_layers() -> None:
    c = Cluster((ClusterHost("127.0.0.1", ("a",)), ClusterHost("m2", ("b",), memory_gb=1)))
    even = cluster.host_shares(c, weights_mb=1000, kv_mb=200, cache_mb=200, need_mb=1500)
    assert [s.planned_mb for s in even] == [1000, 1000]  # (1000+200+200)/2 + the 300 each rank holds
    assert cluster.layer_split(5, 2) == [3, 2]
    piped = cluster.host_shares(replace(c, sharding="pipeline"), weights_mb=1000, kv_mb=200, cache_mb=200,
                                need_mb=1500, layers=5)
    assert [s.planned_mb for s in piped] == [840 + 300, 560 + 300]
    assert cluster.local_planned_mb(even, c.hosts) == 1000
    assert cluster.over_memory(even) == []
    small = cluster.over_memory(cluster.host_shares(c, weights_mb=4000, kv_mb=0, cache_mb=0, need_mb=4000))
    assert small == ["rank 1 (m2) plans 2000 MB but reports 1024 MB"]
    with pytest.raises(ConflictError, match="not enough memory on the hosts of cluster tier big: rank 1"):
        cluster_guard("big", small)
    cluster_guard("big", [])


# --- doctor's host checks, through a recorded runner ----------------------------------


class Recorded:
    def __init__(self, answers: dict[str, RunResult]) -> None:
        self.answers, self.calls = answers, list[list[str]]()

    def __call__(self, argv: Sequence[str], timeout: float = 30.0) -> RunResult:
        self.calls.append(list(argv))
        host = argv[5] if argv[0] == "ssh" else "local"
        return self.answers[host]


def _ok(python: str, mlx: str, present: bool = True) -> RunResult:
    return RunResult((), 0, f"{python}\n{mlx}\n{present}\n")


def test_doctor_asks_local_hosts_here_and_remote_ones_over_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    from importlib import metadata

    me, mlx = sys.version.split()[0], metadata.version("mlx")
    more = ({"ssh": f"mac{i}", "ips": [f"10.0.0.{i}"]} for i in (3, 4, 5))
    s = parse_stack(doc(hosts=[LOCAL, MAC2, *more]))
    runner = Recorded({"local": _ok(me, mlx), "mac2": _ok(me, mlx),
                       "mac3": RunResult((), 255, "", "ssh: connect to host mac3 port 22: timed out"),
                       "mac4": _ok("3.12.1", "0.29.0"), "mac5": _ok(me, "none", present=False)})
    monkeypatch.setattr(doctor, "runner", runner)
    (check,) = doctor._cluster(s, None)
    assert runner.calls[0][0] == sys.executable  # 127.0.0.1: no ssh
    assert runner.calls[1][:6] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "mac2"]
    assert check.status == "FAIL" and check.id == "cluster-big"
    assert "mac3: not reachable over ssh (ssh: connect to host mac3 port 22: timed out)" in check.detail
    assert f"mac4: Python 3.12.1, this Mac has {me}, MLX 0.29.0, this Mac has {mlx}" in check.detail
    assert "mac5: MLX is not installed for that Python, the model folder is missing" in check.detail
    assert "local" not in check.detail and "mac2" not in check.detail
    two = parse_stack(doc())
    good = replace(two, tiers=(replace(two.tiers[0], path=s.tiers[0].path),))
    (check,) = doctor._cluster(good, None)
    assert check.status == "PASS", check.detail
