"""Tiny models built on the spot, offline: for `setup --demo`, tests and benchmarks.

Two kinds, both in the mlx-lm `qwen2` layout that mlx-lm and vllm-mlx load as is:

- :func:`build_random_model`: random weights (hidden size 64, 1 layer), a byte-level
  BPE tokenizer with a realistic vocabulary (~29K tokens, about 4 characters a token on
  English and code) trained here on the Python documentation and standard library the
  interpreter ships, and a ChatML chat template. It produces nonsense text, fast.
- :func:`build_scripted_model`: hand-set weights that make greedy (or sampled)
  decoding emit a given text, whatever the prompt, and optionally a second text after
  a tool result (a tool call, then a plain answer: one tool round trip of an agent).
  The texts are cut into pieces that become added tokens; the chain restarts from the
  last prompt token (see the function). Used to get real tool calls out of a real server.

Building is idempotent: a finished model carries a marker file, and a model is built
in a temporary folder and renamed into place, so a crash never leaves half a model.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mlx_stack.system import limits

if TYPE_CHECKING:
    import mlx.core as mx
    from transformers import PreTrainedTokenizerFast

    from mlx_stack.json_types import JSON

_MARKER = ".mlx-stack-model.json"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# A realistic vocabulary: about 4 characters a token on English and code (Claude Code's
# 76 KB first request is ~19K tokens, as with a real model's tokenizer). The embedding
# matrix grows with it, so the demo shapes stay tiny (hidden 64).
DEMO_VOCAB = 32768
# The random model's shape. Prefill on MLX's CPU backend is mostly attention's n^2 work,
# which only a second layer needs (the chunked prefill evaluates just the KV cache, and
# one layer's keys and values come straight from the embeddings): with one layer a
# 17K-token agent turn takes ~1 CPU-second to its first token, with two ~30
# (benchmarks/agent_prefill.py).
HIDDEN = 64
LAYERS = 1
CORPUS_CHARS = 3_000_000

# ChatML, tolerant of content given as a list of parts, tool messages and tool calls.
CHAT_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nYou may call these tools:\n"
    "{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}<|im_end|>\n{%- endif %}"
    "{%- for message in messages %}"
    "{%- set content = message['content'] %}"
    "{%- if content is not string %}{%- set ns = namespace(text='') %}"
    "{%- for part in (content or []) %}{%- if part is mapping and part.get('text') %}"
    "{%- set ns.text = ns.text + part['text'] %}{%- endif %}{%- endfor %}"
    "{%- set content = ns.text %}{%- endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ content }}"
    "{%- for call in (message.get('tool_calls') or []) %}\n<tool_call>\n"
    "{{ {'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson }}"
    "\n</tool_call>{%- endfor %}<|im_end|>\n"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)

# The scripted model's template: as above, but a prompt whose last message is a tool
# result ends with AFTER_TOOL, so the scripted chain can tell the turn after a tool call.
AFTER_TOOL = "<|after_tool|>"
SCRIPTED_TEMPLATE = CHAT_TEMPLATE.replace(
    "<|im_start|>assistant\n{%- endif %}",
    "<|im_start|>assistant\n{%- if messages and messages[-1]['role'] == 'tool' %}" + AFTER_TOOL
    + "{%- endif %}{%- endif %}",
)
assert SCRIPTED_TEMPLATE != CHAT_TEMPLATE

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Apple Silicon Macs share one pool of unified memory between CPU and GPU.",
    "A local model server answers requests like a cloud API, all day and all night.",
    "Tiers: standard for quality, fast for speed, longctx for long documents.",
    "Hello! How can I help you today? Tell me about the weather in Paris.",
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
    "0123456789 + - * / = ( ) [ ] { } < > , . ; : ! ? ' \" _ # @ & % $",
]


def _is_complete(dest: Path, spec: dict[str, JSON]) -> bool:
    try:
        return json.loads((dest / _MARKER).read_text()) == spec
    except (OSError, ValueError):
        return False


def _corpus() -> list[str]:
    """Text and code this machine already has, in a fixed order: the Python reference
    documentation that ships with the interpreter (``pydoc_data``: English prose) and the
    standard library's top-level modules (code), about ``CORPUS_CHARS`` characters."""
    import sysconfig

    texts = list(_CORPUS)
    try:
        from pydoc_data import topics as docs  # absent from some trimmed Pythons

        texts += [docs.topics[k] for k in sorted(docs.topics)]
    except ImportError:
        pass
    size = sum(map(len, texts))
    for source in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        if size >= CORPUS_CHARS:
            break
        try:
            text = source.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        texts.append(text)
        size += len(text)
    return texts


@functools.cache
def _trained_tokenizer() -> str:
    """The demo's byte-level BPE (``DEMO_VOCAB`` tokens) as JSON, trained once per process.

    Deterministic for a given Python (same corpus, same order); about 1.5 s on one core.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=DEMO_VOCAB,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok.to_str()


def _train_tokenizer(extra_tokens: list[str], specials: list[str] | None = None,
                     chat_template: str = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    """The demo tokenizer, with ``extra_tokens`` added (they decode to their text) and
    ``specials`` added as special tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_tokenizer()),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        chat_template=chat_template,
        model_max_length=1 << 20,
    )
    if specials:
        fast.add_special_tokens({"additional_special_tokens": specials})  # pyright: ignore[reportArgumentType]
    if extra_tokens:
        fast.add_tokens(extra_tokens)  # non-special: they decode to their text
    return fast


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    """The id of one token (typed int | list[int]: a list of tokens gives a list)."""
    return cast(int, tokenizer.convert_tokens_to_ids(token))


def _config(vocab_size: int, hidden: int, layers: int, context_length: int, eos_id: int,
            tied: bool) -> dict[str, JSON]:
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": hidden * 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "rms_norm_eps": 1e-6,
        "vocab_size": vocab_size,
        "max_position_embeddings": context_length,
        "rope_theta": 10000.0,
        "tie_word_embeddings": tied,
        "eos_token_id": eos_id,
        "bos_token_id": None,
        "torch_dtype": "float32",
    }


def _write(dest: Path, spec: dict[str, JSON], tokenizer: PreTrainedTokenizerFast,
           config: dict[str, JSON], weights: dict[str, mx.array]) -> Path:
    import mlx.core as mx

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        tokenizer.save_pretrained(str(tmp))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        mx.save_safetensors(str(tmp / "model.safetensors"), weights)
        (tmp / _MARKER).write_text(json.dumps(spec))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def build_random_model(dest: Path, *, seed: int = 0, context_length: int = 2048, kv_heads: int = 1) -> Path:
    """A tiny qwen2 model with random weights in ``dest`` (about 0.2 MB); returns ``dest``.
    ``kv_heads=2``: one KV head per rank when sharded over two (a cluster tier's demo)."""
    spec: dict[str, JSON] = {"kind": "random", "seed": seed, "context_length": context_length, "version": 3}
    if kv_heads != 1:
        spec["kv_heads"] = kv_heads
    if _is_complete(dest, spec):
        return dest
    import mlx.core as mx
    from mlx.utils import tree_flatten
    with limits.open_files_kept():  # mlx_lm lowers the open-file limit at import
        from mlx_lm.models import qwen2

    tokenizer = _train_tokenizer([])
    eos_id = _token_id(tokenizer, "<|im_end|>")
    config = _config(len(tokenizer), HIDDEN, LAYERS, context_length, eos_id, tied=True)
    config["num_key_value_heads"] = kv_heads
    mx.random.seed(seed)
    model = qwen2.Model(qwen2.ModelArgs.from_dict(config))
    weights = dict(tree_flatten(model.parameters()))
    return _write(dest, spec, tokenizer, config, weights)


def split_unique_pieces(text: str, seen: set[str] | None = None) -> list[str]:
    """Cut ``text`` into pieces that are each distinct (a piece is a token of the chain),
    and distinct from those in ``seen`` (which grows with the new pieces)."""
    words = re.findall(r"\s*\S+|\s+", text)
    pieces: list[str] = []
    seen = set() if seen is None else seen
    current = ""
    for word in words:
        current += word
        if current not in seen:
            pieces.append(current)
            seen.add(current)
            current = ""
    if current:  # a repeated tail: glue it onto the last piece
        if pieces:
            seen.discard(pieces[-1])
            pieces[-1] += current
            seen.add(pieces[-1])
        else:
            pieces.append(current)
            seen.add(current)
    return pieces


def build_scripted_model(dest: Path, text: str, *, after_tool: str | None = None,
                         context_length: int = 4096) -> Path:
    """A tiny model that deterministically answers ``text`` to any prompt; returns ``dest``.

    With ``after_tool``, a prompt whose last message is a tool result is answered with
    that text instead: the chat template ends such a prompt with the special token
    ``AFTER_TOOL`` (after ``<|im_start|>assistant``), and the chain starts from the last
    prompt token. So ``text`` can be a tool call and ``after_tool`` the plain answer: one
    tool round trip per user turn, as an agent client runs it.

    The shape stays small whatever the vocabulary: every token outside the script embeds
    as the same "other" direction, ``AFTER_TOOL`` as its own, each piece as its own; the
    attention and MLP outputs are zero, so the last hidden state is the current token's
    direction and ``lm_head`` maps other -> the first piece of ``text``, ``AFTER_TOOL`` ->
    the first piece of ``after_tool``, piece k -> piece k + 1, a last piece -> end.
    """
    import numpy as np

    digest = hashlib.sha256(f"{text}\0{after_tool}".encode()).hexdigest()[:16]
    spec = {"kind": "scripted", "text_sha": digest, "context_length": context_length, "version": 2}
    if _is_complete(dest, spec):
        return dest
    import mlx.core as mx

    seen: set[str] = set()
    chains = [split_unique_pieces(text, seen)]
    if after_tool is not None:
        chains.append(split_unique_pieces(after_tool, seen))
    tokenizer = _train_tokenizer([p for chain in chains for p in chain], specials=[AFTER_TOOL],
                                 chat_template=SCRIPTED_TEMPLATE)
    vocab = len(tokenizer)
    eos_id = _token_id(tokenizer, "<|im_end|>")
    pieces = [p for chain in chains for p in chain]
    hidden = max(8, -(-(2 + len(pieces)) // 8) * 8)  # a multiple of 8 for RoPE
    config = _config(vocab, hidden, 1, context_length, eos_id, tied=False)
    config["num_attention_heads"] = 1
    config["num_key_value_heads"] = 1
    config["intermediate_size"] = 8

    embed = np.zeros((vocab, hidden), dtype=np.float32)
    embed[:, 0] = 1.0  # "any other token"
    lm_head = np.zeros((vocab, hidden), dtype=np.float32)
    after_id = _token_id(tokenizer, AFTER_TOOL)
    embed[after_id] = 0.0
    embed[after_id, 1] = 1.0
    starts = [_token_id(tokenizer, chain[0]) for chain in chains]
    lm_head[starts[0], 0] = 100.0
    lm_head[starts[-1], 1] = 100.0
    dim = 2
    for chain in chains:
        ids = [_token_id(tokenizer, p) for p in chain]
        for current, nxt in zip(ids, [*ids[1:], eos_id], strict=True):
            embed[current] = 0.0
            embed[current, dim] = 1.0
            lm_head[nxt, dim] = 100.0
            dim += 1
    zeros = mx.zeros
    prefix = "model.layers.0."
    weights = {
        "model.embed_tokens.weight": mx.array(embed),
        "model.norm.weight": mx.ones((hidden,)),
        "lm_head.weight": mx.array(lm_head),
        prefix + "input_layernorm.weight": mx.ones((hidden,)),
        prefix + "post_attention_layernorm.weight": mx.ones((hidden,)),
        prefix + "self_attn.q_proj.weight": zeros((hidden, hidden)),
        prefix + "self_attn.q_proj.bias": zeros((hidden,)),
        prefix + "self_attn.k_proj.weight": zeros((hidden, hidden)),
        prefix + "self_attn.k_proj.bias": zeros((hidden,)),
        prefix + "self_attn.v_proj.weight": zeros((hidden, hidden)),
        prefix + "self_attn.v_proj.bias": zeros((hidden,)),
        prefix + "self_attn.o_proj.weight": zeros((hidden, hidden)),
        prefix + "mlp.gate_proj.weight": zeros((8, hidden)),
        prefix + "mlp.up_proj.weight": zeros((8, hidden)),
        prefix + "mlp.down_proj.weight": zeros((hidden, 8)),
    }
    return _write(dest, spec, tokenizer, config, weights)


# --- Retrieval models (issue 25): a tiny encoder and a tiny cross-encoder reranker ---

DEMO_ENCODER_DIM = 64
DEMO_ENCODER_MAX_LENGTH = 512


def _bert_config(vocab_size: int, max_length: int, pad_id: int) -> dict[str, JSON]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": DEMO_ENCODER_DIM,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": DEMO_ENCODER_DIM * 2,
        "hidden_act": "gelu",
        "max_position_embeddings": max_length,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "vocab_size": vocab_size,
        "pad_token_id": pad_id,
        "torch_dtype": "float32",
    }


def _bert_weights(config: dict[str, JSON], seed: int) -> dict[str, mx.array]:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_embeddings.models import bert

    mx.random.seed(seed)
    model = bert.Model(bert.ModelArgs.from_dict(config))
    return dict(tree_flatten(model.parameters()))


def _encoder_tokenizer(max_length: int) -> PreTrainedTokenizerFast:
    tokenizer = _train_tokenizer([])
    tokenizer.model_max_length = max_length
    return tokenizer


def build_encoder_model(dest: Path, *, seed: int = 10,
                        max_length: int = DEMO_ENCODER_MAX_LENGTH) -> Path:
    """A tiny BERT text encoder (random weights, 64 dimensions, mean pooling + L2 norm, as
    mlx-embeddings' `bert` does) in ``dest``; vllm-mlx serves it with --embedding-model."""
    spec = {"kind": "encoder", "seed": seed, "max_length": max_length, "version": 1}
    if _is_complete(dest, spec):
        return dest
    tokenizer = _encoder_tokenizer(max_length)
    config = _bert_config(len(tokenizer), max_length, _token_id(tokenizer, "<|endoftext|>"))
    return _write(dest, spec, tokenizer, config, _bert_weights(config, seed))


DEMO_RERANK_REVISION = "0" * 40


def build_reranker_model(cache_dir: Path, repo: str, *, seed: int = 11,
                         max_length: int = DEMO_ENCODER_MAX_LENGTH) -> Path:
    """A tiny BERT cross-encoder (one relevance logit) as ``repo`` in a Hugging Face cache
    layout under ``cache_dir``; returns its snapshot folder.

    vllm-mlx 0.6 loads a reranker only through ``snapshot_download(repo)`` (a local path is
    refused as a repo id), so the demo reranker lives where an offline hub cache finds it.
    """
    repo_dir = cache_dir / ("models--" + repo.replace("/", "--"))
    dest = repo_dir / "snapshots" / DEMO_RERANK_REVISION
    spec = {"kind": "reranker", "seed": seed, "max_length": max_length, "version": 1}
    if not _is_complete(dest, spec):
        import mlx.core as mx

        tokenizer = _encoder_tokenizer(max_length)
        config = _bert_config(len(tokenizer), max_length, _token_id(tokenizer, "<|endoftext|>"))
        config["architectures"] = ["BertForSequenceClassification"]
        config["num_labels"] = 1
        weights = {"bert." + k: v for k, v in _bert_weights(config, seed).items()}
        mx.random.seed(seed + 1)
        weights["classifier.weight"] = mx.random.normal((1, DEMO_ENCODER_DIM))
        weights["classifier.bias"] = mx.zeros((1,))
        _write(dest, spec, tokenizer, config, weights)
    refs = repo_dir / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(DEMO_RERANK_REVISION)
    return dest
