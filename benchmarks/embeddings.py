"""Embeddings through the front door vs direct, on the demo encoder, in one run (issue 25).

Stack: `setup --demo --retrieval` cut to the `fast` chat tier and the `embed` tier (the
demo encoder: BERT, 64 dimensions, 2 layers, random weights), each a real vllm-mlx 0.6
process on MLX's CPU backend, behind the real front door. Each figure is printed beside
its target with PASS/FAIL:

- texts/s at batch 64 (64 texts per request, 1 client) >= 95% of direct: requests
  alternate direct / front door (A B B A ...), the median of the paired ratios;
- added p50 at batch 1 <= 2 ms: the median of the paired differences;
- a 1,000-document corpus of ~200-token texts embedded through the front door in
  batches of 64: total time and the server's tokens/s (usage.prompt_tokens / time),
  printed (no target: the demo encoder's speed says nothing about a real one).

Also measured, for the "where do retrieval models run" decision (no target): the same
encoder loaded beside the chat model in one vllm-mlx process (`--embedding-model` on the
chat tier) vs its own process: resident memory of each layout, and a 100-token chat stream
(first chunk, longest gap, total) while 16-text embedding batches run against the same
process or the other one
(vllm-mlx 0.6 runs `embed()` on its event loop, so it blocks the chat stream when shared).

Writes JSON to benchmarks/results/embeddings.json. The figures are from a tiny model on
2 shared CPU cores: they measure the front door's overhead and the process layout, not an
encoder's speed on a Mac.

Usage: python benchmarks/embeddings.py [--rounds N] [--skip-layout]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import psutil

from mlx_stack.paths import Paths
from mlx_stack.services import demo_stack, lifecycle, stack_store
from mlx_stack.system import ports, secrets

RESULTS = Path(__file__).parent / "results" / "embeddings.json"
LOAD_BATCH = 16  # texts per embedding request of the background load (60 words each)
STREAM_TOKENS = 100
STREAM_DEADLINE_S = 120.0  # a chat stream held longer than this is reported as not finished
SENTENCE = "Apple Silicon Macs share one pool of unified memory between CPU and GPU. "


def _post(client: httpx.Client, url: str, body: object, headers: dict[str, str]) -> tuple[float, dict]:
    start = time.perf_counter()
    r = client.post(url, json=body, headers=headers)
    took = time.perf_counter() - start
    r.raise_for_status()
    return took, r.json()


def _line(name: str, value: float, unit: str, op: str, target: float, ok: bool) -> str:
    return f"{name:<44} {value:>9.2f} {unit:<7} target {op} {target:<6} {'PASS' if ok else 'FAIL'}"


def _paired(client: httpx.Client, direct: str, front: str, key: str, body: dict, rounds: int,
            ) -> tuple[list[float], list[float]]:
    """A B B A ... timings of the same body, direct and through the front door."""
    d, f = [], []
    auth = {"Authorization": f"Bearer {key}"}
    for i in range(rounds):
        order = [(direct, {}, d), (front, auth, f)] if i % 2 == 0 else [(front, auth, f), (direct, {}, d)]
        for url, headers, out in order:
            out.append(_post(client, url, body, headers)[0])
    return d, f


def _texts(n: int, words: int, salt: str = "") -> list[str]:
    base = SENTENCE.split()
    return [" ".join(base[(i + j) % len(base)] for j in range(words)) + f" {salt}{i}" for i in range(n)]


def front_door_figures(home: Paths, rounds: int) -> dict[str, object]:
    stack = stack_store.load(home)
    key = secrets.read_secret(home, secrets.GATEWAY_KEY) or ""
    direct = f"http://127.0.0.1:{stack.tier('embed').port}/v1/embeddings"
    front = f"http://127.0.0.1:{stack.gateway.port}/v1/embeddings"
    served = stack.tier("embed").served_model
    out: dict[str, object] = {}
    with httpx.Client(timeout=300) as client:
        for _ in range(3):  # warm both paths
            _paired(client, direct, front, key, {"model": served, "input": _texts(64, 30)}, 2)
        batch = {"model": served, "input": _texts(64, 30)}
        d, f = _paired(client, direct, front, key, batch, rounds)
        ratios = [(64 / b) / (64 / a) for a, b in zip(d, f, strict=True)]
        out["batch64"] = {"direct_texts_s": 64 / statistics.median(d),
                          "front_texts_s": 64 / statistics.median(f),
                          "ratio_median": statistics.median(ratios), "rounds": rounds}
        one = {"model": served, "input": "hello world"}
        d1, f1 = _paired(client, direct, front, key, one, rounds * 4)
        diffs = [(b - a) * 1000 for a, b in zip(d1, f1, strict=True)]
        out["batch1"] = {"direct_p50_ms": statistics.median(d1) * 1000,
                         "front_p50_ms": statistics.median(f1) * 1000,
                         "added_p50_ms": statistics.median(diffs), "rounds": len(diffs)}
        # calibrate ~200 tokens per document with the server's own count
        _, probe = _post(client, direct, {"model": served, "input": _texts(1, 100)}, {})
        per_word = probe["usage"]["prompt_tokens"] / 100
        words = max(1, round(200 / per_word))
        corpus = _texts(1000, words, "doc")
        start, tokens = time.perf_counter(), 0
        for i in range(0, len(corpus), 64):
            _, answer = _post(client, front, {"model": "text-embedding-3-small", "input": corpus[i:i + 64]},
                              {"Authorization": f"Bearer {key}"})
            tokens += answer["usage"]["prompt_tokens"]
        total = time.perf_counter() - start
        out["corpus"] = {"documents": 1000, "tokens": tokens, "tokens_per_doc": tokens / 1000,
                         "seconds": total, "server_tokens_s": tokens / total}
    return out


def _rss(pid: int) -> int:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


def _serve(args: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    argv = [str(bin_dir / "vllm-mlx"), "serve", *args, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"vllm-mlx did not start: see {log}")


def _stream_gap(chat_url: str, embed_url: str, embed_model: str) -> dict[str, float]:
    """The longest gap between chunks of one chat stream while embedding batches run."""
    stop = threading.Event()
    batches = [0]

    def load() -> None:
        with httpx.Client(timeout=300) as c:
            while not stop.is_set():
                body = {"model": embed_model, "input": _texts(LOAD_BATCH, 60, "g")}
                c.post(embed_url, json=body).raise_for_status()
                batches[0] += 1

    worker = threading.Thread(target=load)
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": STREAM_TOKENS,
            "stream": True, "ignore_eos": True}
    gaps: list[float] = []
    finished = True
    worker.start()
    start = time.perf_counter()
    try:
        time.sleep(1.0)
        start = time.perf_counter()
        with httpx.stream("POST", chat_url, json=body, timeout=STREAM_DEADLINE_S) as r:
            last = start
            for chunk in r.iter_bytes():
                if chunk:
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now
                if time.perf_counter() - start > STREAM_DEADLINE_S:
                    finished = False
                    break
    except httpx.TimeoutException:
        finished = False
    finally:
        stop.set()
        worker.join()
    rest = gaps[1:] or [0.0]
    return {"first_chunk_ms": (gaps[0] if gaps else 0.0) * 1000, "max_gap_ms": max(rest) * 1000,
            "p50_gap_ms": statistics.median(rest) * 1000, "chunks": len(gaps), "finished": finished,
            "stream_s": time.perf_counter() - start, "embedding_batches": batches[0]}


def layout_figures(home: Paths, work: Path) -> dict[str, object]:
    chat, encoder = str(home.demo_model_dir("fast")), str(home.demo_model_dir("embed"))
    out: dict[str, object] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        p1, p2 = ports.free_port(), ports.free_port()
        procs.append(_serve([chat, "--served-model-name", "fast", "--continuous-batching"], p1,
                            work / "chat.log"))
        procs.append(_serve([encoder, "--served-model-name", "embed", "--lazy-load-model",
                             "--embedding-model", encoder], p2, work / "enc.log"))
        time.sleep(2)
        base = f"http://127.0.0.1:{p1}"
        httpx.post(base + "/v1/chat/completions", timeout=300,
                   json={"model": "fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        httpx.post(f"http://127.0.0.1:{p2}/v1/embeddings", json={"model": encoder, "input": "x"}, timeout=300)
        separate = {"chat_rss_mb": _rss(procs[0].pid) / 2**20, "encoder_rss_mb": _rss(procs[1].pid) / 2**20}
        separate["gap"] = _stream_gap(base + "/v1/chat/completions",
                                      f"http://127.0.0.1:{p2}/v1/embeddings", encoder)
        for p in procs:
            p.terminate()
            p.wait(30)
        procs.clear()
        p3 = ports.free_port()
        procs.append(_serve([chat, "--served-model-name", "fast", "--continuous-batching",
                             "--embedding-model", encoder], p3, work / "shared.log"))
        base = f"http://127.0.0.1:{p3}"
        httpx.post(base + "/v1/chat/completions", timeout=300,
                   json={"model": "fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        httpx.post(base + "/v1/embeddings", json={"model": encoder, "input": "x"}, timeout=300)
        shared = {"rss_mb": _rss(procs[0].pid) / 2**20,
                  "gap": _stream_gap(base + "/v1/chat/completions", base + "/v1/embeddings", encoder)}
        out = {"separate": separate, "shared": shared}
    finally:
        for p in procs:
            p.kill()
            p.wait(30)
    return out


def _save(result: dict[str, object]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--skip-layout", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlx-embed-bench-"))
    home = Paths(work / "home")
    os.environ["MLX_STACK_HOME"] = str(home.home)
    demo_stack.write_demo_stack(home, retrieval=True)
    stack = stack_store.load(home)
    keep = [replace(t, port=ports.free_port()) for t in stack.tiers if t.name in ("fast", "embed")]
    stack = replace(stack, tiers=tuple(keep), fallback_order=("fast",), routing=None,
                    gateway=replace(stack.gateway, port=ports.free_port()))
    stack_store.save(home, stack)
    result: dict[str, object] = {"machine": f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"}
    try:
        lifecycle.up(home, health_timeout=420)
        rss = {}
        for name in ("fast", "embed"):
            rec = json.loads((home.run_dir / f"{name}.pid").read_text())
            rss[name] = _rss(int(rec["pid"])) / 2**20
        result["stack_rss_mb"] = rss
        result["front_door"] = front_door_figures(home, args.rounds)
        _save(result)
        print(json.dumps(result["front_door"]), flush=True)
    finally:
        lifecycle.down(home, grace=5)
    if not args.skip_layout:
        result["layout"] = layout_figures(home, work)
    fd = result["front_door"]
    assert isinstance(fd, dict)
    b64, b1, corpus = fd["batch64"], fd["batch1"], fd["corpus"]
    lines = [
        _line("texts/s at batch 64, front door / direct", 100 * b64["ratio_median"], "%", ">=", 95,
              b64["ratio_median"] >= 0.95),
        _line("added p50 at batch 1", b1["added_p50_ms"], "ms", "<=", 2, b1["added_p50_ms"] <= 2),
    ]
    checks = [b64["ratio_median"] >= 0.95, b1["added_p50_ms"] <= 2]
    print(f"direct: {b64['direct_texts_s']:.0f} texts/s at batch 64, p50 {b1['direct_p50_ms']:.2f} ms "
          f"at batch 1; front door: {b64['front_texts_s']:.0f} texts/s, p50 {b1['front_p50_ms']:.2f} ms")
    print("\n".join(lines))
    print(f"corpus: {corpus['documents']} documents x {corpus['tokens_per_doc']:.0f} tokens in "
          f"{corpus['seconds']:.1f} s through the front door; "
          f"server {corpus['server_tokens_s']:.0f} tokens/s")
    print(f"resident memory: {result['stack_rss_mb']}")
    if "layout" in result:
        lay = result["layout"]
        assert isinstance(lay, dict)
        sep, sh = lay["separate"], lay["shared"]
        for label, mem, gap in (("own process", f"chat {sep['chat_rss_mb']:.0f} MB + encoder "
                                                f"{sep['encoder_rss_mb']:.0f} MB", sep["gap"]),
                                ("same process", f"{sh['rss_mb']:.0f} MB", sh["gap"])):
            took = gap["stream_s"]
            done = f"{took:.1f} s" if gap["finished"] else f"not finished after {took:.0f} s"
            print(f"{label}: {mem}; a {STREAM_TOKENS}-token chat stream under embedding load: first chunk "
                  f"{gap['first_chunk_ms']:.0f} ms, longest gap {gap['max_gap_ms']:.0f} ms, {done} "
                  f"({gap['embedding_batches']} batches of {LOAD_BATCH})")
    result["targets"] = {"batch64_ratio_ge_0.95": checks[0], "added_p50_le_2ms": checks[1]}
    _save(result)
    print(f"wrote {RESULTS}")
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
