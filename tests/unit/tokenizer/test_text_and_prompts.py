"""Text tokenizers (round trips, errors) and prompt layouts (truncation, chat prompts, masks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unif2ace.config.model import VocabConfig
from unif2ace.tokenizer import BPETokenizer, ByteTokenizer, Prompter, TiktokenGPT2Tokenizer, load_text_tokenizer

CAPTIONS = [
    "A young woman with long wavy auburn hair and bangs smiles warmly; she wears small gold earrings.",
    "An older man with a grey beard, thick eyebrows and round glasses looks calm and slightly tired.",
    "Short black hair, oval face, light skin, no makeup, neutral expression, plain grey background.",
    "Café owner, naïve smile — unicode survives: é, ü, 你好.",
] * 5


def test_bpe_train_save_load_round_trip(tmp_path):
    tok = BPETokenizer.train(CAPTIONS, vocab_size=400, min_frequency=1)
    assert tok.bos_id == tok.eos_id == 0
    for text in CAPTIONS[:4]:
        ids = tok.encode(text)
        assert tok.eos_id not in ids
        assert tok.decode(ids) == text
    tok.save(tmp_path)
    again = load_text_tokenizer(tmp_path)
    assert again.encode(CAPTIONS[1]) == tok.encode(CAPTIONS[1])
    assert (tmp_path / "tokenizer.json").read_text() == BPETokenizer.train(CAPTIONS, 400, 1)._tok.to_str()


def test_special_strings_are_plain_text():
    tok = BPETokenizer.train(CAPTIONS, vocab_size=300, min_frequency=1)
    assert tok.eos_id not in tok.encode("<|endoftext|> is just text")


def test_tokenizer_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_text_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read text tokenizer"):
        load_text_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="gpt2.tiktoken"):
        TiktokenGPT2Tokenizer.from_ranks_file(tmp_path / "gpt2.tiktoken")


def _ranks_file() -> Path | None:
    for p in Path("/tmp/whisper_sdist").glob("*/whisper/assets/gpt2.tiktoken"):
        return p
    try:
        import whisper

        p = Path(whisper.__file__).parent / "assets" / "gpt2.tiktoken"
        return p if p.is_file() else None
    except ImportError:
        return None


def test_gpt2_tiktoken_offline():
    pytest.importorskip("tiktoken")
    path = _ranks_file()
    if path is None:
        pytest.skip("gpt2.tiktoken not available (see docs/tokenizers.md to extract it from the whisper sdist)")
    tok = TiktokenGPT2Tokenizer.from_ranks_file(path)
    assert len(tok) == 50295 and tok.bos_id == 50256
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2 ids (public)
    text = "def f():\n        return 1"
    assert tok.decode(tok.encode(text)) == text
    assert max(tok.encode("a" + " " * 8 + "b")) > 50256  # a phi whitespace-run token


def _prompter(max_text_len=8, n=4) -> Prompter:
    v = VocabConfig(llm_vocab_size=257, codebook_size=16, bos_id=256, eos_id=256)
    return Prompter(ByteTokenizer(), v, max_text_len, n)


def test_t2i_truncation_and_empty_prompt():
    p = _prompter()
    v = p.v
    out = p.t2i_gen(["abcdefghijklmnop", ""])
    block = out.input_ids[:, :9]
    assert block[0].tolist() == [v.special_id("<|t2i|>"), 256, *b"abcdef", 256]
    assert block[1].tolist() == [v.pad_id] * 6 + [v.special_id("<|t2i|>"), 256, 256]
    assert out.image_mask[:, 10:14].all() and out.image_mask.sum() == 8
    assert out.pool_mask[1].tolist()[:9] == [False] * 6 + [True] * 3
    assert (out.group_ids == 1).all()


def test_chat_prompt_left_padding_and_history():
    p = _prompter()
    img = torch.arange(8).reshape(2, 4) + p.v.image_offset
    out = p.chat_prompt(img, ["hi?", "what colour is the hair?"], histories=[[("a", "b")], []])
    assert (out.input_ids[:, -1] == ByteTokenizer().encode(":")[0]).all()
    first = out.input_ids[0].tolist()
    assert first.count(256) == 2  # bos + eos closing the earlier answer
    row1 = out.input_ids[1]
    assert int((row1 == p.v.pad_id).sum()) > 0 and row1[0] == p.v.pad_id  # left padded
    assert out.image_mask.sum() == 8 and (out.group_ids == 0).all()
    with pytest.raises(ValueError, match="question is empty"):
        p.chat_prompt(img, ["", "x"])
    with pytest.raises(ValueError, match="image_ids must have shape"):
        p.chat_prompt(img[:, :3], ["a", "b"])
