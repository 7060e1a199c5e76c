"""The demo-model builder, checked through a real vllm-mlx server and the openai client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlx_stack.services.demo_models import (
    build_random_model,
    build_scripted_model,
    split_unique_pieces,
)
from tests.helpers import free_port

pytestmark = pytest.mark.integration

TOOL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
ANSWER = "It is sunny in Paris."
TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}]


def test_pieces_are_unique_and_rebuild_the_text():
    for text in (TOOL_TEXT, "a a a b a", "x", "same same"):
        pieces = split_unique_pieces(text)
        assert "".join(pieces) == text
        assert len(set(pieces)) == len(pieces)
    seen: set[str] = set()
    first, second = split_unique_pieces("a b c", seen), split_unique_pieces("a b d a", seen)
    assert "".join(second) == "a b d a" and not set(first) & set(second)


def test_the_demo_tokenizer_has_a_realistic_vocabulary(tmp_path: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(build_random_model(tmp_path / "m")))
    assert 16_000 <= len(tok) <= 33_000
    english = ("A local model server answers requests like a cloud API. Before editing a file, "
               "read it, so that the edit matches the code that is already there. ") * 20
    assert len(english) / len(tok(english)["input_ids"]) >= 4.0
    # code from packages the corpus leaves out (it has the stdlib's top-level modules only)
    stdlib = Path(json.__file__).parent.parent
    code = "".join((stdlib / f).read_text()
                   for f in ("json/__init__.py", "asyncio/tasks.py", "http/server.py"))
    assert len(code) / len(tok(code)["input_ids"]) >= 3.4


def test_builds_are_idempotent(tmp_path: Path):
    first = build_random_model(tmp_path / "m", seed=3)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    build_random_model(tmp_path / "m", seed=3)
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((first / "config.json").read_text())["model_type"] == "qwen2"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = build_scripted_model(tmp_path_factory.mktemp("models") / "tool", TOOL_TEXT, after_tool=ANSWER)
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vllm_mlx.cli", "serve", str(model), "--host", "127.0.0.1",
             "--port", str(port), "--served-model-name", "tool",
             "--enable-auto-tool-choice", "--tool-call-parser", "hermes"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail("vllm-mlx exited:\n" + log.read_text()[-3000:])
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("vllm-mlx not healthy in 90 s:\n" + log.read_text()[-3000:])
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(20)


def test_scripted_model_makes_a_real_tool_call(scripted_server: str):
    from openai import OpenAI

    client = OpenAI(base_url=scripted_server, api_key="unused", timeout=60)
    resp = client.chat.completions.create(
        model="tool", messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS, max_tokens=64, temperature=0,  # type: ignore[arg-type]
    )
    calls = resp.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]

    stream = client.chat.completions.create(
        model="tool", messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS, max_tokens=64, temperature=0, stream=True,  # type: ignore[arg-type]
    )
    names, args = [], ""
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            if call.function and call.function.name:
                names.append(call.function.name)
            if call.function and call.function.arguments:
                args += call.function.arguments
    assert names == ["get_weather"]
    assert json.loads(args) == {"city": "Paris"}


def test_scripted_model_answers_in_text_after_the_tool_result(scripted_server: str):
    """One tool round trip as an agent runs it: call, result, answer; a new user turn
    calls the tool again (the chain restarts from the prompt's last token)."""
    from openai import OpenAI

    client = OpenAI(base_url=scripted_server, api_key="unused", timeout=60)
    messages: list = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="tool", messages=messages, tools=TOOLS,  # type: ignore[arg-type]
                                           max_tokens=64)
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.function.name, "arguments": call.function.arguments}}]},  # type: ignore[union-attr]
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 C"},
    ]
    second = client.chat.completions.create(model="tool", messages=messages, tools=TOOLS,  # type: ignore[arg-type]
                                            max_tokens=64)
    assert not second.choices[0].message.tool_calls
    assert second.choices[0].message.content == ANSWER
    assert second.choices[0].finish_reason == "stop"
    messages += [{"role": "assistant", "content": ANSWER}, {"role": "user", "content": "And Rome?"}]
    third = client.chat.completions.create(model="tool", messages=messages, tools=TOOLS,  # type: ignore[arg-type]
                                           max_tokens=64)
    assert third.choices[0].message.tool_calls
