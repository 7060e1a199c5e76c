"""`status`'s requests sent ahead (services.look_ahead, probes.Ahead): what is sent, to
whom, and when nothing is. A small recording HTTP server stands in for a tier; the
processes named by the pid files are real (`sleep` in its own session, or not)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from mlx_stack.paths import Paths
from mlx_stack.services import look_ahead
from mlx_stack.system import pidfile, probes, secrets
from mlx_stack.system.host import OneScan

KEY = "sk-look-ahead-test-key"


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str | None]]] = []  # (model, Authorization)

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        type(self).seen.append((body.get("model"), self.headers.get("Authorization")))
        raw = json.dumps({"choices": [{"message": {"content": "p"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def server() -> Iterator[str]:
    _Recorder.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _sleeper(own_group: bool = True) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], start_new_session=own_group)


@pytest.fixture
def leader() -> Iterator[subprocess.Popen[bytes]]:
    proc = _sleeper()
    yield proc
    proc.kill()
    proc.wait()


def _stack(tmp_path: Path, pid: int) -> Paths:
    p = Paths(tmp_path / "home")
    pidfile.write(p.run_dir, pidfile.record_for("fast", pid, ["sleep", "60"], port=1))
    secrets.write_secret(p, secrets.GATEWAY_KEY, KEY)
    return p


def _look(p: Paths, url: str, *, key: str | None = None, sent: look_ahead.Sent | None = None) -> OneScan:
    """One look as `status` makes it: the requests, then what is kept for the next one."""
    sent = sent or look_ahead.send(p)
    looked = OneScan(sent.ahead)
    assert looked.completion(url, "fast", api_key=key, timeout=5.0, headers={"x-mlx-stack-probe": "1"}).ok
    look_ahead.remember(p, sent, looked)
    return looked


def _kept(p: Paths) -> dict[str, object]:
    return json.loads((p.run_dir / look_ahead.LOOKS_FILE).read_text())


def test_the_next_status_sends_the_last_looks_requests_first_and_takes_their_answers(
        tmp_path: Path, server: str, leader: subprocess.Popen[bytes]) -> None:
    p = _stack(tmp_path, leader.pid)
    _look(p, server, key=KEY)
    kept = (p.run_dir / look_ahead.LOOKS_FILE).read_text()
    assert KEY not in kept and _kept(p)["requests"] == [
        {"url": server, "model": "fast", "keyed": True, "timeout": 5.0,
         "headers": {"x-mlx-stack-probe": "1"}, "kind": "chat"}]
    assert (p.run_dir / look_ahead.LOOKS_FILE).stat().st_mode & 0o777 == 0o600
    _Recorder.seen = []
    sent = look_ahead.send(p)
    assert len(sent.ahead) == 1
    deadline = time.monotonic() + 5
    while not _Recorder.seen and time.monotonic() < deadline:  # on its way before anyone asks
        time.sleep(0.01)
    assert _Recorder.seen == [("fast", f"Bearer {KEY}")]  # the key, read again from secrets/
    mtime = (p.run_dir / look_ahead.LOOKS_FILE).stat().st_mtime_ns
    _look(p, server, key=KEY, sent=sent)
    assert _Recorder.seen == [("fast", f"Bearer {KEY}")]  # the look took the early answer: one request
    assert (p.run_dir / look_ahead.LOOKS_FILE).stat().st_mtime_ns == mtime  # unchanged: not rewritten


def test_an_early_answer_serves_only_the_very_same_request(
        tmp_path: Path, server: str, leader: subprocess.Popen[bytes]) -> None:
    p = _stack(tmp_path, leader.pid)
    _look(p, server, key=KEY)
    secrets.write_secret(p, secrets.GATEWAY_KEY, "sk-a-new-key")  # the key changed meanwhile
    _Recorder.seen = []
    sent = look_ahead.send(p)
    looked = OneScan(sent.ahead)
    assert looked.completion(server, "fast", api_key="sk-a-new-key", timeout=5.0,
                             headers={"x-mlx-stack-probe": "1"}).ok
    assert looked.completion(server, "fast", timeout=5.0).ok  # other headers: another request
    # the early request went with the key read now, and served the look; the other asked itself
    assert sorted(str(a) for _, a in _Recorder.seen) == ["Bearer sk-a-new-key", "None"]


@pytest.mark.parametrize("change", ["pid file", "dead", "not a group leader", "before this boot",
                                    "another pid file", "schema", "not loopback", "no key", "garbage",
                                    "too big", "a fifo kept", "a fifo pid file", "not UTF-8"])
def test_nothing_is_sent_early_unless_every_pid_file_is_as_that_look_saw_it(
        tmp_path: Path, server: str, leader: subprocess.Popen[bytes], change: str) -> None:
    p = _stack(tmp_path, leader.pid)
    _look(p, server, key=KEY)
    looks = p.run_dir / look_ahead.LOOKS_FILE
    others: list[subprocess.Popen[bytes]] = []
    if change == "pid file":  # the service restarted: a new pid file
        pidfile.write(p.run_dir, pidfile.record_for("fast", leader.pid, ["sleep", "60"], port=3))
    elif change == "dead":
        leader.kill()
        leader.wait()
    elif change == "not a group leader":  # the same text, now naming a process of another group
        others.append(_sleeper(own_group=False))
        text = p.pid_file("fast").read_text().replace(str(leader.pid), str(others[0].pid))
        p.pid_file("fast").write_text(text)
        _look(p, server, key=KEY)  # kept with this very pid file
    elif change == "before this boot":
        os.utime(p.pid_file("fast"), (1.0, 1.0))
        _look(p, server, key=KEY)
    elif change == "another pid file":
        pidfile.write(p.run_dir, pidfile.record_for("standard", leader.pid, ["sleep", "60"], port=2))
    elif change == "schema":
        looks.write_text(looks.read_text().replace('"schema": 1', '"schema": 2'))
    elif change == "not loopback":
        looks.write_text(looks.read_text().replace("127.0.0.1", "192.0.2.1"))
    elif change == "no key":
        secrets.delete_secret(p, secrets.GATEWAY_KEY)
    elif change == "garbage":
        looks.write_text('{"schema": 1, "pid_files": ' + json.dumps(_kept(p)["pid_files"])
                         + ', "requests": [{"url": 7}, [], "x", {"url": "' + server + '", "model": "fast"}]}')
    elif change == "too big":
        looks.write_text(looks.read_text() + " " * look_ahead.MAX_BYTES)
    elif change == "a fifo kept":  # (a plain read would wait for a writer for ever)
        looks.unlink()
        os.mkfifo(looks)
    elif change == "a fifo pid file":
        os.mkfifo(p.run_dir / "other.pid")
    elif change == "not UTF-8":
        looks.write_bytes(b"\xff\xfe" + looks.read_bytes())
    try:
        _Recorder.seen = []
        assert len(look_ahead.send(p).ahead) == 0
        assert _Recorder.seen == []
    finally:
        for proc in others:
            proc.kill()
            proc.wait()


def test_nothing_is_kept_when_a_pid_file_changed_during_the_look_nor_a_failed_request(
        tmp_path: Path, server: str, leader: subprocess.Popen[bytes]) -> None:
    p = _stack(tmp_path, leader.pid)
    sent = look_ahead.send(p)
    looked = OneScan(sent.ahead)
    assert not looked.completion("http://127.0.0.1:9", "fast", timeout=1.0).ok  # refused: not kept
    look_ahead.remember(p, sent, looked)
    assert not (p.run_dir / look_ahead.LOOKS_FILE).exists()
    looked = OneScan(sent.ahead)
    assert looked.completion(server, "fast", timeout=5.0).ok
    pidfile.write(p.run_dir, pidfile.record_for("fast", leader.pid, ["sleep", "60"], port=3))
    look_ahead.remember(p, sent, looked)
    assert not (p.run_dir / look_ahead.LOOKS_FILE).exists()


def test_no_pid_files_no_run_folder_nothing_written(tmp_path: Path, server: str) -> None:
    p = Paths(tmp_path / "home")
    sent = look_ahead.send(p)
    looked = OneScan(sent.ahead)
    assert looked.completion(server, "fast", timeout=5.0).ok
    look_ahead.remember(p, sent, looked)
    assert not p.home.exists()


def test_ahead_answers_once_and_waits_for_an_answer_on_its_way(server: str) -> None:
    ahead = probes.Ahead()
    request = probes.asked(server, "fast", timeout=5.0)
    ahead.send(request)
    ahead.send(request)  # the same request twice: sent once
    assert len(ahead) == 1
    answer = ahead.take(request)
    assert answer is not None and answer.ok
    assert ahead.take(request) is None  # taken: the next asker asks itself
    assert ahead.take(probes.asked(server, "slow", timeout=5.0)) is None
    assert len(_Recorder.seen) == 1


def test_the_module_that_sends_first_loads_nothing_heavy() -> None:
    """The module loads nothing heavy: the requests go before psutil and the stack's types."""
    code = ("import sys; import mlx_stack.services.look_ahead; "
            "print(sorted(m for m in ('psutil', 'mlx_stack.core.stack', 'yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
