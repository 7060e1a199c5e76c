"""`mlx-stack peer add/list/remove` and `config set gateway.*`: stack.yaml, the key, errors."""

from __future__ import annotations

import json
import stat

import pytest
import yaml

from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.paths import Paths
from mlx_stack.services import stack_store
from mlx_stack.services.gateway_config import write_gateway_config
from mlx_stack.system import ports
from tests.helpers import self_signed

KEY = "sk-mlxstack-peer-key-0123456789abcdef"


def _write_stack(home: Paths) -> Stack:
    stack = Stack((Tier("fast", "org/small", "/models/small", ports.free_port(), context_window=8192),),
                  ("fast",), Gateway("127.0.0.1", ports.free_port()))
    stack_store.save(home, stack)
    return stack


def _yaml(home: Paths) -> dict:
    return yaml.safe_load(home.stack_file.read_text())


def _out(r) -> str:
    return r.stdout + r.stderr


def test_add_list_remove(run, isolated_home: Paths) -> None:
    stack = _write_stack(isolated_home)
    write_gateway_config(isolated_home, stack, cloud_port=None)  # as if the front door ran
    port = ports.free_port()  # nothing answers there: added anyway, with a warning
    r = run("peer", "add", f"http://Mac-B.local:{port}/v1/", input=KEY + "\n")
    assert r.exit_code == 0, r.stderr
    assert f"peer mac-b added: http://mac-b.local:{port}" in r.stderr and "does not answer now" in r.stderr
    assert _yaml(isolated_home)["peers"] == [{"name": "mac-b", "url": f"http://mac-b.local:{port}"}]
    secret = isolated_home.secret_file("peer-mac-b")
    assert secret.read_text().strip() == KEY and stat.S_IMODE(secret.stat().st_mode) == 0o600
    doc = json.loads(isolated_home.routes_file.read_text())  # a running front door follows
    assert doc["peers"] == [{"name": "mac-b", "url": f"http://mac-b.local:{port}", "ca_file": None}]
    key_file = isolated_home.home / "k.txt"
    key_file.write_text(KEY + "x\n")
    r = run("peer", "add", f"http://10.0.0.7:{port}", "--key-file", str(key_file), "--name", "studio",
            "--no-check")
    assert r.exit_code == 0, r.stderr
    r = run("peer", "list")
    assert r.exit_code == 0 and "mac-b" in r.stdout and "studio" in r.stdout and "…cdef" in r.stdout
    r = run("peer", "list", "--json")
    listed = json.loads(r.stdout)["peers"]
    assert [p["name"] for p in listed] == ["mac-b", "studio"] and listed[1]["key"] == "sk-…defx"
    r = run("peer", "remove", "mac-b")
    assert r.exit_code == 0 and "removed" in r.stderr
    assert not secret.exists() and [p["name"] for p in _yaml(isolated_home)["peers"]] == ["studio"]
    assert [p["name"] for p in json.loads(isolated_home.routes_file.read_text())["peers"]] == ["studio"]


def test_the_key_is_never_printed(run, isolated_home: Paths) -> None:
    _write_stack(isolated_home)
    port = ports.free_port()
    outputs = [run("peer", "add", f"http://127.0.0.1:{port}", "--name", "b", input=KEY),
               run("peer", "add", f"http://127.0.0.1:{port}", "--name", "b", "--json", input=KEY),
               run("peer", "list"), run("peer", "list", "--json"), run("peer", "remove", "b", "--json")]
    for r in outputs:
        assert KEY not in _out(r) and KEY[:-4] not in _out(r)
    assert not list((isolated_home.home / "stack.yaml").read_text().splitlines()).count(KEY)
    assert KEY not in isolated_home.stack_file.read_text()


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://mac-b:4000", "scheme must be http or https"),
    ("mac-b.local:4000", "scheme must be http or https"),
    ("http://:4000", "no host"),
    ("http://mac-b.local", "no port"),
    ("http://mac-b.local:99999", "port must be a number"),
    ("http://user:pw@mac-b.local:4000", "credentials do not belong"),
    ("http://mac-b.local:4000/other", "only scheme, host and port"),
    ("http://mac b:4000", "printable characters without spaces"),
])
def test_bad_urls(run, isolated_home: Paths, url: str, why: str) -> None:
    _write_stack(isolated_home)
    before = isolated_home.stack_file.read_text()
    r = run("peer", "add", url, input=KEY)
    assert r.exit_code == 2, _out(r)
    assert why in r.stderr and "hint:" in r.stderr and "Traceback" not in _out(r)
    assert len(r.stderr.strip().splitlines()) == 2  # one red line + its hint
    assert isolated_home.stack_file.read_text() == before
    assert not isolated_home.secrets_dir.exists() or not list(isolated_home.secrets_dir.iterdir())


def test_errors(run, isolated_home: Paths) -> None:
    _write_stack(isolated_home)
    port = ports.free_port()
    url = f"http://127.0.0.1:{port}"
    r = run("peer", "add", url)  # no key on stdin, no --key-file
    assert r.exit_code == 2 and "no key given" in r.stderr
    r = run("peer", "add", url, input="two words")
    assert r.exit_code == 2 and "printable ASCII" in r.stderr and "two words" not in _out(r)
    r = run("peer", "add", url, "--key-file", str(isolated_home.home / "missing"))
    assert r.exit_code == 4 and "key file not found" in r.stderr
    r = run("peer", "add", url, "--name", "Bad Name", input=KEY)
    assert r.exit_code == 2 and "not a valid peer name" in r.stderr
    r = run("peer", "add", url, "--name", "local", input=KEY)
    assert r.exit_code == 2 and "reserved" in r.stderr
    r = run("peer", "add", url, "--ca-file", str(isolated_home.home / "ca.pem"), input=KEY)
    assert r.exit_code == 4 and "cannot read the CA file" in r.stderr
    assert run("peer", "add", url, "--name", "b", "--no-check", input=KEY).exit_code == 0
    r = run("peer", "add", url, "--name", "c", "--no-check", input=KEY)
    assert r.exit_code == 5 and "is already the peer 'b'" in r.stderr
    r = run("peer", "add", f"http://127.0.0.2:{port}", "--name", "b", "--no-check", input=KEY)
    assert r.exit_code == 5 and "a peer named 'b' exists already" in r.stderr
    r = run("peer", "remove", "nope")
    assert r.exit_code == 4 and "no peer named 'nope'" in r.stderr and "peers: b" in r.stderr


def test_no_stack_yet(run, isolated_home: Paths) -> None:
    r = run("peer", "add", "http://127.0.0.1:4001", input=KEY)
    assert r.exit_code == 4 and "Traceback" not in _out(r)
    assert run("peer", "list").exit_code == 4


def test_a_bad_peers_section_names_the_field(run, isolated_home: Paths) -> None:
    _write_stack(isolated_home)
    data = _yaml(isolated_home)
    data["peers"] = [{"name": "b", "url": "gopher://x:1"}]
    isolated_home.stack_file.write_text(yaml.safe_dump(data))
    r = run("peer", "list")
    assert r.exit_code == 3 and "peers[0].url" in r.stderr


def test_gateway_settings(run, isolated_home: Paths, tmp_path) -> None:
    _write_stack(isolated_home)
    cert, key = self_signed(tmp_path, "localhost")
    assert run("config", "set", "gateway.tls-cert", str(cert)).exit_code == 0
    assert run("config", "set", "gateway.tls-key", str(key)).exit_code == 0
    assert run("config", "set", "gateway.prefer-peers", "yes").exit_code == 0
    r = run("config", "set", "gateway.host", "0.0.0.0")
    assert r.exit_code == 0 and "next start" in r.stderr
    gw = _yaml(isolated_home)["gateway"]
    assert gw["tls-cert"] == str(cert) and gw["tls-key"] == str(key) and gw["prefer-peers"] is True
    assert gw["host"] == "0.0.0.0"
    r = run("config", "set", "gateway.tls-cert", str(tmp_path / "none.pem"))
    assert r.exit_code == 4 and "cannot read" in r.stderr
    r = run("config", "set", "gateway.host", "a b")
    assert r.exit_code == 2
    r = run("config", "set", "gateway.nope", "1")
    assert r.exit_code == 4 and "gateway keys" in r.stderr
    assert run("config", "unset", "gateway.tls-key").exit_code == 0
    r = run("up", "--dry-run")
    assert "--tls-cert" in r.stdout or r.exit_code != 0
