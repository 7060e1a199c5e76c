"""A cluster tier (issue 26): one model sharded over several Macs by MLX's own runtime.

The engine is ``mlx.launch`` running ``mlx_lm.server`` on every rank (rank 0 answers
HTTP on the tier's port); this module is its pure part: the hosts (the hostfile that
``mlx.distributed_config`` writes: ``{"backend", "envs", "hosts": [{"ssh", "ips",
"rdma"}]}`` or the bare list, plus our optional ``memory_gb`` per host, which MLX
ignores), the launch line, each host's share of the memory plan, and what ``doctor``
concludes from each host's answers. No I/O: the services read the hostfile and run
the commands.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import cast

from mlx_stack.core.validate import Fields, is_number
from mlx_stack.json_types import JSONObject

VLLM_MLX, MLX_DISTRIBUTED = "vllm-mlx", "mlx-distributed"
ENGINES = (VLLM_MLX, MLX_DISTRIBUTED)
RING, JACCL = "ring", "jaccl"
BACKENDS = (RING, JACCL)
TENSOR, PIPELINE = "tensor", "pipeline"
SHARDINGS = (TENSOR, PIPELINE)
DEFAULT_RING_PORT = 32323  # mlx.launch's own default (--starting-port)
LOCAL_NAMES = ("127.0.0.1", "localhost")  # hosts run here, without ssh
# mlx.launch runs a rank without ssh only when its ssh name is exactly 127.0.0.1.
LAUNCH_LOCAL = "127.0.0.1"
# What mlx_lm.server answers (and so what the front door may send a cluster tier).
ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
SSH_TIMEOUT_S = 5  # doctor's ssh ConnectTimeout


@dataclass(frozen=True)
class ClusterHost:
    ssh: str  # what mlx.launch sshes into (127.0.0.1 / localhost: this Mac, no ssh)
    ips: tuple[str, ...] = ()  # the ring's addresses
    rdma: tuple[str | None, ...] = ()  # JACCL: the RDMA device towards each host (self: null)
    memory_gb: float | None = None  # what the guard checks this host's share against

    @property
    def local(self) -> bool:
        return self.ssh in LOCAL_NAMES


@dataclass(frozen=True)
class Cluster:
    """The distributed part of a tier: its hosts (rank order), backend and sharding."""

    hosts: tuple[ClusterHost, ...]
    backend: str = RING
    sharding: str = TENSOR
    hostfile: str | None = None  # the hosts came from this file (kept in stack.yaml as given)
    ring_port: int = DEFAULT_RING_PORT
    envs: tuple[str, ...] = ()  # the hostfile's `envs` (MLX_METAL_FAST_SYNCH=1 and the like)

    @property
    def ranks(self) -> int:
        return len(self.hosts)

    @property
    def ring_ports(self) -> range:
        """The ports the ring listens on: one per rank and IP, from ``ring_port`` up."""
        return range(self.ring_port, self.ring_port + max(1, sum(len(h.ips) for h in self.hosts)))


Hosts = tuple[ClusterHost, ...]


def parse_hosts(raw: object, f: Fields, where: str, backend: str) -> tuple[Hosts, tuple[str, ...]]:
    """The hosts of a hostfile document (or a stack.yaml ``hosts:`` list) and its envs;
    errors through ``f`` naming ``where``."""
    envs: tuple[str, ...] = ()
    items: object = raw
    if isinstance(raw, dict):
        doc = f.nested(where, cast("dict[str, object]", raw))
        items = cast("object", doc.get("hosts", list))
        raw_envs = cast("list[object]", doc.optional("envs", list, []))
        if not all(isinstance(e, str) and "=" in e for e in raw_envs):
            f.fail(f"{where}.envs", "expected a list of NAME=value strings")
        envs = tuple(cast("list[str]", raw_envs))
        where = f"{where}.hosts"
    if not isinstance(items, list) or not items:
        f.fail(where, "expected a non-empty list of hosts ({ssh, ips, rdma, memory_gb})")
    listed = cast("list[object]", items)
    hosts = tuple(_host(f, item, f"{where}[{i}]", backend) for i, item in enumerate(listed))
    n = len(hosts)
    if not hosts[0].local:
        f.fail(f"{where}[0].ssh", f"rank 0 must be this Mac ({' or '.join(LOCAL_NAMES)}): it answers HTTP "
               "on the tier's port behind the front door (keep its LAN address in `ips` for the ring)")
    if backend == JACCL:
        for i, h in enumerate(hosts):
            if len(h.rdma) != n or h.rdma[i] is not None:
                f.fail(f"{where}[{i}].rdma", f"JACCL needs one RDMA device per host ({n}), null for itself")
            if any(d is None for j, d in enumerate(h.rdma) if j != i):
                f.fail(f"{where}[{i}].rdma", "a JACCL host needs an RDMA device towards every other host")
    return hosts, envs


def _host(f: Fields, raw: object, where: str, backend: str) -> ClusterHost:
    if isinstance(raw, str):  # a bare address: ssh and ring address alike
        raw = {"ssh": raw, "ips": [raw]}
    if not isinstance(raw, dict):
        f.fail(where, "expected a mapping with `ssh` (and `ips` for the ring)")
    h = f.nested(where, cast("dict[str, object]", raw))
    h.unknown(("ssh", "ips", "rdma", "memory_gb"))
    ssh = h.get("ssh", str).strip()
    if not ssh or any(c.isspace() for c in ssh) or ssh.startswith("-"):
        h.fail("ssh", f"{ssh!r} is not a host name")
    ips = cast("list[object]", h.optional("ips", list, []))
    if not all(isinstance(a, str) and a and not a.startswith("-") for a in ips):
        h.fail("ips", "expected a list of addresses")
    if backend == RING and not ips:
        h.fail("ips", "the ring backend needs the host's address (`ips`), not only its ssh name")
    rdma = cast("list[object]", h.optional("rdma", list, []))
    if not all(d is None or isinstance(d, str) for d in rdma):
        h.fail("rdma", "expected a list of RDMA device names (null for the host itself)")
    mem = h.data.get("memory_gb")
    if mem is not None and not (is_number(mem) and mem > 0):
        h.fail("memory_gb", "must be a positive number of GB")
    return ClusterHost(ssh, tuple(cast("list[str]", ips)), tuple(cast("list[str | None]", rdma)),
                       float(mem) if mem is not None else None)


def hostfile_document(c: Cluster) -> JSONObject:
    """The hostfile mlx.launch reads (its own format; ``memory_gb`` rides along, ignored by
    it); ``localhost`` is written 127.0.0.1, the only name mlx.launch runs without ssh."""
    hosts: list[object] = []
    for h in c.hosts:
        entry: dict[str, object] = {"ssh": LAUNCH_LOCAL if h.local else h.ssh, "ips": list(h.ips),
                                    "rdma": list(h.rdma)}
        if h.memory_gb is not None:
            entry["memory_gb"] = h.memory_gb
        hosts.append(entry)
    return cast("JSONObject", {"backend": c.backend, "envs": list(c.envs), "hosts": hosts})


def hostfile_text(c: Cluster) -> str:
    return json.dumps(hostfile_document(c), indent=2) + "\n"


def dump_hosts(c: Cluster) -> object:
    """What stack.yaml keeps: the hostfile's path as given, else the hosts inline."""
    if c.hostfile is not None:
        return c.hostfile
    if c.envs:
        return {"backend": c.backend, "envs": list(c.envs), "hosts": _dump_list(c)}
    return _dump_list(c)


def _dump_list(c: Cluster) -> list[object]:
    out: list[object] = []
    for h in c.hosts:
        entry: dict[str, object] = {"ssh": h.ssh, "ips": list(h.ips)}
        if h.rdma:
            entry["rdma"] = list(h.rdma)
        if h.memory_gb is not None:
            entry["memory_gb"] = h.memory_gb
        out.append(entry)
    return out


# --- the launch ----------------------------------------------------------------------


def launch_argv(c: Cluster, *, launcher: str, python: str, hostfile: str, model_path: str, port: int,
                prompt_cache_bytes: int | None = None, extra: Sequence[str] = ()) -> list[str]:
    """``mlx.launch`` running ``mlx_lm.server`` on every rank; rank 0 serves ``port`` on
    127.0.0.1 (the front door's side of it)."""
    argv = [launcher, "--backend", c.backend, "--hostfile", hostfile,
            "--starting-port", str(c.ring_port), "--python", python,
            "--env", "HF_HUB_OFFLINE=1",  # every rank: the model is a local folder, never the hub
            # `--`: mlx.launch would take the server's `--host` as an abbreviation of its `--hosts`
            "--", "-m", "mlx_lm", "server", "--model", model_path,
            "--host", LAUNCH_LOCAL, "--port", str(port)]
    if c.sharding == PIPELINE:
        argv.append("--pipeline")
    if prompt_cache_bytes:
        argv += ["--prompt-cache-bytes", str(prompt_cache_bytes)]
    return argv + list(extra)


# --- memory -------------------------------------------------------------------------


@dataclass(frozen=True)
class HostShare:
    rank: int
    ssh: str
    planned_mb: int  # weights + KV + prompt cache share, + the per-process overhead in full
    memory_mb: int | None  # what the host reported (memory_gb), None: not reported


def layer_split(layers: int, ranks: int) -> list[int]:
    """mlx-lm's pipeline split: rank r holds layers // ranks, one more while r < the rest."""
    base, extra = divmod(max(0, layers), ranks)
    return [base + (1 if r < extra else 0) for r in range(ranks)]


def host_shares(c: Cluster, *, weights_mb: int, kv_mb: int, cache_mb: int, need_mb: int,
                layers: int | None = None) -> list[HostShare]:
    """Each host's part of a tier's plan: tensor parallelism splits weights, KV and the
    prompt cache evenly; pipeline splits them by each rank's layers (evenly when the
    layer count is unknown). What is neither (activations, the server process) every
    rank holds in full."""
    n = c.ranks
    split = kv_mb + weights_mb + cache_mb
    rest = max(0, need_mb - weights_mb - kv_mb)
    if c.sharding == PIPELINE and layers:
        fractions = [k / layers for k in layer_split(layers, n)]
    else:
        fractions = [1 / n] * n
    return [HostShare(r, h.ssh, math.ceil(split * fractions[r]) + rest,
                      int(h.memory_gb * 1024) if h.memory_gb is not None else None)
            for r, h in enumerate(c.hosts)]


def over_memory(shares: Sequence[HostShare]) -> list[str]:
    """The hosts whose share exceeds the memory they reported, each said with its numbers."""
    return [f"rank {s.rank} ({s.ssh}) plans {s.planned_mb} MB but reports {s.memory_mb} MB"
            for s in shares if s.memory_mb is not None and s.planned_mb > s.memory_mb]


def local_planned_mb(shares: Sequence[HostShare], hosts: Sequence[ClusterHost]) -> int:
    """What the ranks on this Mac plan together (the local guard counts only these)."""
    return sum(s.planned_mb for s, h in zip(shares, hosts, strict=True) if h.local)


# --- doctor -------------------------------------------------------------------------

# One probe per host: the interpreter's version, MLX's version, and whether the model
# folder is there, on one line each (a host without mlx prints "none").
PROBE = ("import sys, os\n"
         "try:\n    import mlx.core as mx; v = mx.__version__\nexcept Exception:\n    v = 'none'\n"
         "print(sys.version.split()[0]); print(v); print(os.path.isdir(sys.argv[1]))\n")


def probe_argv(h: ClusterHost, python: str, model_path: str, timeout_s: int = SSH_TIMEOUT_S) -> list[str]:
    """The command that asks ``h`` for its facts: run here for a local host, else over ssh
    (BatchMode: never a password prompt; a short connect timeout)."""
    local = [python, "-c", PROBE, model_path]
    if h.local:
        return local
    remote = " ".join(shlex.quote(a) for a in local)
    return ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout_s}", h.ssh, remote]


@dataclass(frozen=True)
class HostFacts:
    reachable: bool
    python: str | None = None
    mlx: str | None = None
    model_present: bool = False
    error: str = ""


def read_probe(returncode: int, stdout: str, stderr: str) -> HostFacts:
    """A host's answer to :data:`PROBE` (exit 255 is ssh's own failure: unreachable)."""
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    if returncode != 0 or len(lines) < 3:
        why = (stderr.strip().splitlines() or [f"exit {returncode}"])[-1][:200]
        return HostFacts(False, error=why) if returncode in (255, 124, 127) or not lines else \
            HostFacts(True, error=why)
    return HostFacts(True, lines[0], None if lines[1] == "none" else lines[1], lines[2] == "True")


def host_problems(facts: Mapping[str, HostFacts], *, python: str, mlx: str | None) -> dict[str, list[str]]:
    """Per host, what is wrong: unreachable, another Python or MLX than this Mac's, no model."""
    out: dict[str, list[str]] = {}
    for host, f in facts.items():
        problems: list[str] = []
        if not f.reachable:
            problems.append(f"not reachable over ssh ({f.error})")
        elif f.python is None:
            problems.append(f"the probe failed ({f.error})")
        else:
            if f.python != python:
                problems.append(f"Python {f.python}, this Mac has {python}")
            if f.mlx is None:
                problems.append("MLX is not installed for that Python")
            elif f.mlx != mlx:
                problems.append(f"MLX {f.mlx}, this Mac has {mlx}")
            if not f.model_present:
                problems.append("the model folder is missing")
        out[host] = problems
    return out


def parse_hostfile(c: Cluster, data: object, source: str) -> Cluster:
    """``c`` with the hosts of the hostfile ``source`` (its parsed JSON); StateError naming
    the file and the field. The hostfile's `backend`, when set, must agree with the tier's."""
    from mlx_stack.core.validate import in_file
    from mlx_stack.errors import StateError

    f = Fields({"hosts": data}, error=in_file(source, StateError,
                                              "write it with `mlx.distributed_config`, or list the hosts "
                                              "in stack.yaml"), top="top level")
    named = cast("dict[str, object]", data).get("backend") if isinstance(data, dict) else None
    if named not in (None, "", c.backend):
        f.fail("backend", f"{named!r}, but the tier says backend: {c.backend}")
    hosts, envs = parse_hosts(f.data["hosts"], f, "hosts", c.backend)
    return replace(c, hosts=hosts, envs=envs)


def doctor_check(tier: str, hosts: Sequence[str], problems: Mapping[str, list[str]]) -> JSONObject:
    """The fields of doctor's check of one cluster tier's hosts (``core.doctor.Check``)."""
    bad = {h: p for h, p in problems.items() if p}
    if not bad:
        return {"id": f"cluster-{tier}", "title": f"cluster tier {tier}", "status": "PASS",
                "detail": f"{len(hosts)} hosts reachable, same Python and MLX, model folder present",
                "fix": None}
    detail = "; ".join(f"{h}: {', '.join(p)}" for h, p in bad.items())
    return {"id": f"cluster-{tier}", "title": f"cluster tier {tier}", "status": "FAIL", "detail": detail,
            "fix": "give every host key-based ssh from this Mac (`ssh-copy-id HOST`), install the same "
                   "Python at the same path with the same mlx and mlx-lm, copy the model folder to the "
                   "same path; `mlx.distributed_config` checks the links"}
