"""The measurement engine: streamed requests against an OpenAI-compatible base URL.

One run: a warm-up request (its time is not counted), ``iterations`` passes over the
fixed prompt set one request at a time, then for each concurrency level that many
streams sent at once. Every request asks the server for token usage in the last
chunk (``stream_options.include_usage``), so token counts are the server's own. A
background thread samples the resident memory of the server's process tree; the peak
is reported. Arithmetic and verdicts live in :mod:`mlx_stack.core.bench`.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mlx_stack.core import bench as core
from mlx_stack.core import bench_result as results
from mlx_stack.errors import ServiceError, UsageError
from mlx_stack.json_types import JSONObject, as_list, as_object, to_int
from mlx_stack.paths import Paths

if TYPE_CHECKING:
    from mlx_stack.system.chat_stream import Transport
    from mlx_stack.system.host import Host

Progress = Callable[[str], None]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Options:
    iterations: int = 3
    levels: tuple[int, ...] = (1, 4, 8)
    max_tokens: int = 128
    prompts: int | None = None  # the first N prompts of the fixed set; None = all
    timeout_s: float = 300.0  # per request: connect, and silence between two chunks


@dataclass(frozen=True)
class Measurement:
    prompts: tuple[str, ...]
    single: core.SingleStream
    levels: tuple[core.ConcurrencyLevel, ...]
    peak_rss_gb: float  # 0.0 when the server process is unknown
    mlx_peak_gb: float | None  # reported by vllm-mlx on Metal; None elsewhere

    @property
    def peak_memory_gb(self) -> float:
        """The larger figure: RSS may not count all of Metal's memory, MLX's misses the runtime."""
        return max(self.peak_rss_gb, self.mlx_peak_gb or 0.0)


class MemorySampler:
    """Peak resident memory (bytes) of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int | None, interval_s: float = 0.1, *, host: Host | None = None):
        from mlx_stack.system.host import real

        self.host = real(host)
        self.pid = pid
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        if self.pid is None:
            return 0
        total = self.host.tree_rss(self.pid) or 0
        self.peak = max(self.peak, total)
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        if self.pid is not None:
            self._thread = threading.Thread(target=self._loop, name="bench-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sample()


class Client:
    """Streams chat completions from ``base_url`` (ending in /v1) as model ``model``.

    The HTTP is :class:`mlx_stack.system.chat_stream.ChatHttp`'s (``transport``: a stand-in
    server for tests); this class times the tokens and reads the usage."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 timeout_s: float = 300.0, clock: Clock = time.monotonic,
                 transport: Transport | None = None):
        from mlx_stack.system.chat_stream import ChatHttp

        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.clock = clock
        self._http = ChatHttp(base_url, api_key=api_key, timeout_s=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def mlx_peak_gb(self) -> float | None:
        """MLX's peak memory in GB from vllm-mlx's ``/v1/status`` (None if not reported)."""
        status = self._http.get_json("/status")
        metal = status.get("metal", {}) if status is not None else None
        value = metal.get("peak_memory_gb") if isinstance(metal, dict) else None
        return float(value) if isinstance(value, int | float) and value > 0 else None

    def stream(self, prompt: core.Prompt, tag: str, max_tokens: int) -> tuple[core.Sample, float, float]:
        """One streamed request: (sample, start, end) on this client's clock."""
        body: JSONObject = {
            "model": self.model,
            "messages": [{"role": "user", "content": core.tagged(prompt, tag)}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        start = self.clock()
        first: float | None = None
        chunks = 0
        usage: dict[str, object] = {}
        for data in self._http.stream("/chat/completions", body):
            chunk = as_object(data) or {}
            if chunk.get("usage"):
                usage = as_object(chunk["usage"]) or {}
            for choice in as_list(chunk.get("choices")):
                delta = as_object((as_object(choice) or {}).get("delta")) or {}
                if any(delta.get(k) for k in ("content", "reasoning_content", "reasoning", "tool_calls")):
                    chunks += 1
                    if first is None:
                        first = self.clock()
        end = self.clock()
        prompt_tokens = to_int(usage.get("prompt_tokens"))
        completion_tokens = to_int(usage.get("completion_tokens") or chunks)
        ttft = (first if first is not None else end) - start
        return core.Sample(prompt.name, prompt_tokens, completion_tokens, ttft, end - start), start, end


def run_concurrent(client: Client, streams: int, max_tokens: int, run_id: str) -> core.ConcurrencyLevel:
    """``streams`` requests released together; aggregate over the wall time they took."""
    barrier = threading.Barrier(streams)

    def one(i: int) -> tuple[core.Sample, float, float]:
        barrier.wait(timeout=30)
        return client.stream(core.CONCURRENCY_PROMPT, f"{run_id}-c{streams}-{i}", max_tokens)

    pool = ThreadPoolExecutor(max_workers=streams, thread_name_prefix="bench-stream")
    try:
        futures = [pool.submit(one, i) for i in range(streams)]
        results = [f.result() for f in futures]
    finally:
        # Never wait for stragglers when interrupted: the caller stops the server next.
        pool.shutdown(wait=False, cancel_futures=True)
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    return core.summarize_level(streams, [r[0] for r in results], wall)


def measure(client: Client, *, options: Options, server_pid: int | None,
            on_progress: Progress | None = None, host: Host | None = None) -> Measurement:
    """Warm-up, sequential passes, then the concurrency levels, with peak memory."""
    say = on_progress or (lambda _msg: None)
    prompts = core.prompt_set(options.prompts)
    run_id = uuid.uuid4().hex[:8]  # unique prompts: no request is served from the prefix cache
    with MemorySampler(server_pid, host=host) as memory:
        say("warm-up request on the longest prompt (not counted)")
        client.stream(prompts[-1], f"{run_id}-warmup", min(options.max_tokens, 16))
        samples: list[core.Sample] = []
        for it in range(options.iterations):
            say(f"iteration {it + 1}/{options.iterations}: {len(prompts)} prompts, one at a time")
            for prompt in prompts:
                samples.append(client.stream(prompt, f"{run_id}-{it}", options.max_tokens)[0])
        levels = []
        for n in options.levels:
            say(f"{n} concurrent stream{'s' if n > 1 else ''}")
            levels.append(run_concurrent(client, n, options.max_tokens, run_id))
    if not any(s.completion_tokens for s in samples):
        raise ServiceError("the server generated no tokens", hint="see the server's log")
    return Measurement(
        prompts=tuple(p.name for p in prompts),
        single=core.summarize_single(samples),
        levels=tuple(levels),
        peak_rss_gb=memory.peak / results.GB,
        mlx_peak_gb=client.mlx_peak_gb(),
    )


@dataclass(frozen=True)
class Outcome:
    result: results.BenchResult
    saved_to: str | None  # the file written by --save
    server: str  # where it was measured, in words

    def as_dict(self) -> JSONObject:
        """What `bench --json` prints: the result, and the file --save wrote (or null)."""
        data = self.result.to_dict()
        data["saved_to"] = self.saved_to
        return data


def run(p: Paths, text: str, *, options: Options, port: int | None = None, save: bool = False,
        on_progress: Progress | None = None, host: Host | None = None) -> Outcome:
    """Resolve TARGET, measure it (a temporary server if needed), compare, optionally save."""
    from mlx_stack.services import bench_reference, bench_store, bench_target, hardware

    say = on_progress or (lambda _msg: None)
    target = bench_target.resolve(p, text)
    if target.kind == "tier" and port is not None:
        raise UsageError("--port applies to a temporary server, not to a running tier",
                         hint=f"drop --port: tier {text!r} is measured on its own port")
    profile = hardware.detect()
    with contextlib.ExitStack() as stack:
        if target.kind == "tier":
            server = bench_target.running_tier(p, target, host=host)
            where = f"tier {text} at {server.base_url}"
        else:
            say(f"starting a temporary vllm-mlx for {target.path} ...")
            server = stack.enter_context(bench_target.temporary_server(p, target, port=port, host=host))
            where = f"temporary server at {server.base_url} (stopped afterwards)"
        say(f"measuring {target.model} on {where}")
        client = Client(server.base_url, server.model_name, timeout_s=options.timeout_s)
        stack.callback(client.close)
        measured = measure(client, options=options, server_pid=server.pid, on_progress=say, host=host)
    reference = bench_reference.reference(target.model, target.quant, profile)
    result = results.BenchResult(
        model=target.model,
        quant=target.quant,
        target=text,
        target_kind=target.kind,
        profile=profile.profile_key,
        hardware=profile.label,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        iterations=options.iterations,
        max_tokens=options.max_tokens,
        prompts=measured.prompts,
        single=measured.single,
        concurrency=measured.levels,
        peak_memory_gb=measured.peak_memory_gb,
        peak_rss_gb=measured.peak_rss_gb,
        mlx_peak_gb=measured.mlx_peak_gb,
        reference=reference,
        verdicts=tuple(core.verdicts(measured.single, measured.peak_memory_gb, reference)),
    )
    saved_to = str(bench_store.save(p, result)) if save else None
    return Outcome(result, saved_to, where)
