"""A small OpenAI-compatible server standing in for OpenRouter (the cloud group).

The only fake next to the real stack: it lets the end of the fallback chain be reached
offline. It answers one fixed text, streamed or not, and records the model name and
the Authorization header of every request.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class CloudStandIn:
    text: str
    base_url: str = ""
    seen: list[tuple[str | None, str | None]] = field(default_factory=list)


def _handler(cloud: CloudStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            cloud.seen.append((body.get("model"), self.headers.get("Authorization")))
            base = {"id": "cmpl-cloud", "created": int(time.time()), "model": body.get("model")}
            message = {"role": "assistant", "content": cloud.text}
            if body.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for delta, finish in ((message, None), ({}, "stop")):
                    chunk = {**base, "object": "chat.completion.chunk",
                             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                return
            raw = json.dumps({**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return Handler


@contextmanager
def cloud_standin(text: str) -> Iterator[CloudStandIn]:
    """Serve the stand-in on a free loopback port for the duration of the block."""
    cloud = CloudStandIn(text)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(cloud))
    cloud.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield cloud
    finally:
        server.shutdown()
        server.server_close()
