"""A local stand-in for the Hugging Face Hub's file API, to inject faults into `pull`.

Serves exactly what ``huggingface_hub.snapshot_download`` calls (read from its
source, version 1.33):

- ``GET /api/models/{repo}[/revision/{rev}]`` model info: ``sha``, ``gated``,
  ``siblings`` with sizes, blob ids and LFS metadata;
- ``GET /api/models/{repo}/tree/{rev}`` the recursive file listing;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``,
  ``ETag`` (and ``X-Linked-Etag``/``X-Linked-Size`` for LFS files),
  ``Content-Length`` and ``Range`` requests (206 + ``Content-Range``).

Faults: a gated repo answers 401/403 ``X-Error-Code: GatedRepo`` on resolve
unless the right token is sent; ``cut_once`` files are cut midway the first
time they are fetched; ``stall`` files send half and then wait for ``release``;
``claimed_size`` makes the listing claim a file far larger than it is.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    sha: str = "a" * 40
    gated: bool = False
    announce_gated: bool = True  # False: only the file endpoint says so (401/403)
    tokens: set[str] = field(default_factory=set)  # tokens that accepted the license
    cut_once: set[str] = field(default_factory=set)
    stall: set[str] = field(default_factory=set)
    claimed_size: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_dir(cls, folder: Path, **kw: object) -> FakeRepo:
        files = {
            str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")
        }
        return cls(files=files, **kw)  # type: ignore[arg-type]

    def is_lfs(self, path: str) -> bool:
        return path.endswith(".safetensors")

    def size(self, path: str) -> int:
        return self.claimed_size.get(path, len(self.files[path]))

    def entry(self, path: str) -> dict[str, object]:
        data = self.files[path]
        size = self.size(path)
        out: dict[str, object] = {"type": "file", "path": path, "size": size, "oid": git_blob_id(data)}
        if self.is_lfs(path):
            out["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": size, "pointerSize": 134}
        return out


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.log: list[tuple[str, str, str | None, str | None]] = []  # method, path, Range, Authorization
        self.release = threading.Event()
        self.stalled = threading.Event()
        self._cut_done: set[tuple[str, str]] = set()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, head=True)

            def do_GET(self) -> None:
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def gets(self, path_suffix: str) -> list[str | None]:
        """The Range header of every GET of a file whose URL ends with ``path_suffix``."""
        return [r for m, p, r, _ in self.log if m == "GET" and "/resolve/" in p and p.endswith(path_suffix)]

    # -- request handling -------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, *, head: bool) -> None:
        url = urlsplit(h.path)
        path = unquote(url.path)
        method = "HEAD" if head else "GET"
        self.log.append((method, path, h.headers.get("Range"), h.headers.get("Authorization")))
        if path.startswith("/api/models/"):
            return self._api(h, path[len("/api/models/"):], parse_qs(url.query))
        parts = path.lstrip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(h, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), head=head)
        self._send(h, 404, b"not found", {})

    def _repo_or_401(self, h: BaseHTTPRequestHandler, repo_id: str) -> FakeRepo | None:
        repo = self.repos.get(repo_id)
        if repo is None:  # the real hub hides unknown repos behind a 401
            self._send(h, 401, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"})
        return repo

    def _api(self, h: BaseHTTPRequestHandler, rest: str, query: dict[str, list[str]]) -> None:
        parts = rest.split("/")
        repo_id = "/".join(parts[:2])
        repo = self._repo_or_401(h, repo_id)
        if repo is None:
            return
        if len(parts) >= 4 and parts[2] == "tree":
            body = [repo.entry(p) for p in sorted(repo.files)]
            return self._send(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})
        siblings = []
        for p in sorted(repo.files):
            e = repo.entry(p)
            sib: dict[str, object] = {"rfilename": p, "size": e["size"], "blobId": e["oid"]}
            if "lfs" in e:
                lfs = e["lfs"]
                assert isinstance(lfs, dict)
                sib["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": 134}
            siblings.append(sib)
        info = {"id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": False,
                "gated": "manual" if repo.gated and repo.announce_gated else False, "siblings": siblings}
        self._send(h, 200, json.dumps(info).encode(), {"Content-Type": "application/json"})

    def _resolve(self, h: BaseHTTPRequestHandler, repo_id: str, rev: str, file: str, *, head: bool) -> None:
        repo = self._repo_or_401(h, repo_id)
        if repo is None:
            return
        if repo.gated:
            auth = h.headers.get("Authorization") or ""
            tok = auth.removeprefix("Bearer ").strip()
            if tok not in repo.tokens:
                status = 403 if tok else 401
                msg = f"Access to model {repo_id} is restricted. You must have access and be authenticated."
                headers = {"X-Error-Code": "GatedRepo", "X-Error-Message": msg}
                return self._send(h, status, msg.encode(), headers)
        if file not in repo.files:
            return self._send(h, 404, b"entry not found",
                              {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.sha})
        data = repo.files[file]
        e = repo.entry(file)
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{e["oid"]}"', "Accept-Ranges": "bytes"}
        if "lfs" in e:
            lfs = e["lfs"]
            assert isinstance(lfs, dict)
            headers["X-Linked-Etag"] = f'"{lfs["oid"]}"'
            headers["X-Linked-Size"] = str(lfs["size"])
        if head:
            headers["Content-Length"] = str(len(data))
            h.send_response(200)
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            return
        start = 0
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[len("bytes="):].split("-")[0] or 0)
        body = data[start:]
        key = (repo_id, file)
        if start == 0 and (file in repo.stall or (file in repo.cut_once and key not in self._cut_done)):
            self._cut_done.add(key)
            h.send_response(200)
            for k, v in {**headers, "Content-Length": str(len(data))}.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            if file in repo.stall:
                self.stalled.set()
                self.release.wait(120)
            h.close_connection = True
            return
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self._send(h, 206 if start else 200, body, headers)

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
