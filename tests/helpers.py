"""Helpers the test suites share: waiting, free ports, running the CLI in a child process,
the environment of a child against a stand-in hub, and finding a test stack's processes.

One copy of each (they were copied from module to module before)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO, TypeVar

import psutil

from mlx_stack.paths import Paths
from mlx_stack.system.ports import free_port

__all__ = ["JSONHandler", "cli_command", "cli_env", "free_port", "hub_env", "poll_until", "processes_naming",
           "run_cli", "stack_processes", "wait_for"]

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Call ``check`` until it returns something truthy, and return that; after ``timeout``
    seconds fail the test, naming ``what`` was awaited. ``check`` may itself assert (to give
    up early, e.g. when the process under test died)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def poll_until(check: Callable[[], T], timeout: float, every: float = 0.1) -> T:
    """Like `wait_for`, but at the deadline return the last value (falsy) instead of failing:
    for tests that assert on that value themselves, with a message of their own."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(every)


def cli_command(*args: str, python: str | Path = sys.executable) -> list[str]:
    """The command line of `mlx-stack ARGS` run by ``python`` (this interpreter by default)."""
    return [str(python), "-m", "mlx_stack", *args]


def cli_env(home: Paths | Path | str, drop: Iterable[str] = (), **extra: str) -> dict[str, str]:
    """This process's environment with MLX_STACK_HOME set to ``home``, plus ``extra``,
    without the variables named in ``drop``."""
    root = home.home if isinstance(home, Paths) else home
    env = {**os.environ, "MLX_STACK_HOME": str(root), **extra}
    for name in drop:
        env.pop(name, None)
    return env


def run_cli(home: Paths, *args: str, timeout: float = 300,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `mlx-stack ARGS` in a child process against ``home`` (stdin closed, output captured)."""
    return subprocess.run(cli_command(*args), env=dict(env) if env is not None else cli_env(home), text=True,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)


def hub_env(endpoint: str, hf_home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment by default) pointed at a Hugging Face Hub at
    ``endpoint`` with its cache in ``hf_home``, offline mode off."""
    env = {**(os.environ if base is None else base), "HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home)}
    env.pop("HF_HUB_OFFLINE", None)
    return env


def processes_naming(text: str | Path) -> list[psutil.Process]:
    """Every live (non-zombie) process whose command line mentions ``text``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and str(text) in " ".join(
                    proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def stack_processes(home: Paths) -> list[psutil.Process]:
    """Every live process of one test stack: those whose command line names its state folder."""
    return processes_naming(home.home)


class JSONHandler(BaseHTTPRequestHandler):
    """A stand-in server's handler base: HTTP/1.1 keep-alive, quiet, JSON replies."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: object) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def self_signed(folder: Path, name: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (an IP address or a host name) and its key,
    made by the openssl command (macOS and Debian both have it)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    alt = f"IP:{name}" if name.replace(".", "").isdigit() else f"DNS:{name}"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName={alt}"],
                   check=True, capture_output=True)
    return cert, key


def front_door_process(routes: Path, env: Mapping[str, str], stderr: int | IO[str] = subprocess.PIPE,
                       seconds: float = 60) -> tuple[subprocess.Popen[str], str]:
    """A real front door (``python -m mlx_stack.gateway``) on ``routes`` and a free port,
    once its /health answers; (the process, its base URL)."""
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlx_stack.gateway", "--routes", str(routes), "--port",
                             str(port)], env={**os.environ, **env}, stderr=stderr, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url + "/health", timeout=1, trust_env=False).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() >= deadline or proc.poll() is not None:
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"the front door on {routes} did not start")
        time.sleep(0.1)
