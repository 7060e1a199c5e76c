"""Token-id input for /v1/embeddings (gateway/token_input.py) on a real tokenizer: a
BERT-style WordPiece one that frames its input with [CLS] ... [SEP], built here (the demo
encoder's byte-level BPE is exercised end to end in tests/integration/test_retrieval_live.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from mlx_stack.gateway.token_input import Refused, decode, texts

VOCAB = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "world": 5, "##s": 6, ",": 7, "the": 8}


@pytest.fixture
def bert(tmp_path: Path) -> str:
    tok = Tokenizer(models.WordPiece(VOCAB, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # type: ignore[assignment]
    tok.post_processor = processors.TemplateProcessing(  # type: ignore[assignment]
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.decoder = decoders.WordPiece()  # type: ignore[assignment]
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    tok.enable_truncation(2)  # saved in the file: the front door must not truncate
    tok.enable_padding(length=16)
    folder = tmp_path / "bert"
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    return str(folder)


def test_ids_with_or_without_the_models_own_framing_decode_to_their_text(bert: str) -> None:
    got = decode(bert, [[4, 5], [2, 4, 7, 8, 5, 6, 3]], None, flat=False)
    assert got == ["hello world", "hello, the worlds"]
    assert decode(bert, [[4, 5, 8]], 5, flat=True) == ["hello world the"]  # 3 + [CLS] [SEP] = 5
    assert asyncio.run(texts(bert, [[8]], None, flat=True)) == ["the"]


@pytest.mark.parametrize(("ids", "limit", "why"), [
    ([4, 9], None, "`input` holds token id 9: this model's vocabulary has 9 ids (0 to 8)"),
    ([4, 10**30], None, "vocabulary has 9 ids"),
    ([2, 4, 2, 5, 3], None, "is not this model's tokenization"),  # a special token inside
    ([1, 4], None, "is not this model's tokenization"),  # [UNK] is dropped when decoded
    ([6, 6], None, "is not this model's tokenization"),  # "##s##s" is no word's encoding
    ([2, 3], None, "decodes to no text"),
    ([4, 5], 3, "Input 0 has 4 tokens, exceeding the effective embedding max length of 3"),
    ([4] * 10, 8, "Input 0 has 10 tokens"),  # refused before anything is decoded
])
def test_refused_ids_name_the_problem(bert: str, ids: list[int], limit: int | None, why: str) -> None:
    with pytest.raises(Refused) as err:
        decode(bert, [ids], limit, flat=True)
    assert why in str(err.value)
    assert (err.value.code == "embedding_input_too_long") == why.startswith("Input 0")


def test_names_the_array_and_refuses_a_folder_without_a_tokenizer(bert: str, tmp_path: Path) -> None:
    with pytest.raises(Refused, match=r"`input\[1\]` holds token id 99"):
        decode(bert, [[4], [99]], None, flat=False)
    with pytest.raises(Refused, match=r"tokenizer\.json"):
        decode(str(tmp_path / "nowhere"), [[4]], None, flat=True)
    with pytest.raises(Refused, match=r"tokenizer\.json"):
        decode(None, [[4]], None, flat=True)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(Refused, match=r"tokenizer\.json"):
        decode(str(broken), [[4]], None, flat=True)


def test_the_front_door_does_not_import_tokenizers_until_a_token_id_request() -> None:
    code = ("import json, sys, mlx_stack.gateway.app, mlx_stack.gateway.__main__; print(json.dumps("
            "sorted(m for m in sys.modules if m.startswith(('tokenizers', 'transformers')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == []
