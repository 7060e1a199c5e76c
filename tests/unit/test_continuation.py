"""gateway.continuation: what a cut chat stream kept, the next tier's prompt, the re-emitted chunks."""

from __future__ import annotations

import json
from pathlib import Path

from mlx_stack.gateway.continuation import ChatStream, Translator, completion_body, prompt_for

TEMPLATE = ("{%- for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
            "<|im_end|>\n{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}")


def _chunk(content: str | None = None, finish: str | None = None, **delta: object) -> bytes:
    if content is not None:
        delta["content"] = content
    data = {"id": "chat-1", "model": "standard", "created": 7,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def test_the_kept_text_and_the_stream_identity() -> None:
    chat = ChatStream()
    raw = _chunk(role="assistant") + _chunk("Once") + _chunk(" upon")
    chat.feed(raw[:40])
    chat.feed(raw[40:] + b'data: {"id": "chat-1", "choi')  # an event cut in the middle
    chat.parse()
    assert chat.continuable and chat.partial == "Once upon"
    assert chat.meta == {"id": "chat-1", "model": "standard", "created": 7}


def test_tool_calls_or_a_finish_are_not_continued() -> None:
    chat = ChatStream()
    chat.feed(_chunk(tool_calls=[{"index": 0, "function": {"name": "f"}}]))
    chat.parse()
    assert not chat.continuable
    done = ChatStream()
    done.feed(_chunk("x") + _chunk(finish="stop"))
    done.parse()
    assert not done.continuable


def test_the_next_tier_prompt_ends_right_after_the_partial_answer(tmp_path: Path) -> None:
    config = {"chat_template": TEMPLATE, "eos_token": "<e>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    prompt = prompt_for(str(tmp_path), [{"role": "user", "content": "Tell me"}], "Once upon")
    # The end-of-turn after the partial answer is cut off: the tier goes on from there.
    assert prompt == "<|im_start|>user\nTell me<|im_end|><|im_start|>assistant\nOnce upon"
    assert prompt_for(str(tmp_path / "missing"), [], "x") is None
    body = json.loads(completion_body({"model": "standard", "max_tokens": 100, "temperature": 0}, "fast",
                                      prompt, 30))
    assert body == {"model": "fast", "prompt": prompt, "stream": True, "max_tokens": 70, "temperature": 0}


def test_completion_chunks_become_chunks_of_the_same_chat_stream() -> None:
    t = Translator({"id": "chat-1", "model": "standard", "created": 7})
    out = t.feed(b'data: {"choices": [{"text": " a time", "finish_reason": null}]}\n\ndata: {"choi')
    out += t.feed(b'ces": [{"text": "", "finish_reason": "length"}]}\n\ndata: [DONE]\n\n')
    events = [e for e in out.split(b"\n\n") if e]
    first = json.loads(events[0][6:])
    assert first["id"] == "chat-1" and first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"content": " a time"}
    assert json.loads(events[1][6:])["choices"][0]["finish_reason"] == "length"
    assert events[2] == b"data: [DONE]"
