"""Text tokenizers: round trips, no special-id injection, save/load, errors, and GPT-2/phi ids against HF."""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile

import pytest
from gpt2_reference import find_ranks_file, hf_gpt2_tokenizer

from unif2ace.tokenizer import (
    BPETokenizer,
    ByteTokenizer,
    TextTokenizer,
    TiktokenGPT2Tokenizer,
    WordLevelTokenizer,
    extract_gpt2_ranks,
    find_gpt2_ranks_file,
    load_text_tokenizer,
)
from unif2ace.tokenizer import text as text_module

CAPTIONS = [
    "A young woman with long wavy auburn hair and bangs smiles warmly; she wears small gold earrings.",
    "An older man with a grey beard, thick eyebrows and round glasses looks calm and slightly tired.",
    "Short black hair, oval face, light skin, no makeup, neutral expression, plain grey background.",
    "Café owner, naïve smile — unicode survives: é, ü, 你好, 😀.",
] * 5


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(CAPTIONS, vocab_size=400, min_frequency=1)


def test_bpe_train_save_load_round_trip(bpe, tmp_path):
    assert bpe.bos_id == bpe.eos_id == 0 and len(bpe) == 400
    for text in [*CAPTIONS[:4], "unseen words: Zürich, 東京, émigré  double  spaces\tand\nnewlines"]:
        ids = bpe.encode(text)
        assert all(0 < i < len(bpe) for i in ids)
        assert bpe.decode(ids) == text
    path = bpe.save(tmp_path / "tok")
    assert path == tmp_path / "tok" / "tokenizer.json"
    for spec in (tmp_path / "tok", path, str(path)):
        again = load_text_tokenizer(spec)
        assert isinstance(again, BPETokenizer) and again.encode(CAPTIONS[3]) == bpe.encode(CAPTIONS[3])


def test_bpe_training_is_deterministic(bpe, tmp_path):
    BPETokenizer.train(CAPTIONS, vocab_size=400, min_frequency=1).save(tmp_path / "a")
    BPETokenizer.train(list(CAPTIONS), vocab_size=400, min_frequency=1).save(tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    with pytest.raises(ValueError, match="vocab_size must be >= 257"):
        BPETokenizer.train(CAPTIONS, vocab_size=100)


def test_plain_text_never_yields_special_ids(bpe):
    text = "<|endoftext|> typed by a user is just text <|endoftext|>"
    assert bpe.eos_id not in bpe.encode(text)
    assert bpe.decode(bpe.encode(text)) == text
    assert bpe.decode([bpe.bos_id, *bpe.encode("hair"), bpe.eos_id, 10_000, -1]) == "hair"  # specials skipped
    byte = ByteTokenizer()
    assert byte.eos_id not in byte.encode(text) and byte.decode(byte.encode(text)) == text


def test_decode_can_keep_endoftext(bpe):
    eot = "<|endoftext|>"
    ids = [bpe.bos_id, *bpe.encode("wavy hair"), bpe.eos_id, *bpe.encode(" é"), 10_000]
    assert bpe.decode(ids, skip_special=False) == f"{eot}wavy hair{eot} é"
    assert bpe.decode(ids) == "wavy hair é"
    byte = ByteTokenizer()
    assert byte.decode([256, *b"ab", 256, 300], skip_special=False) == f"{eot}ab{eot}"
    word = WordLevelTokenizer(300, 256)
    assert word.decode([256, 35, 257, 256], skip_special=False) == f"{eot} t35 {eot}"  # fillers stay skipped


def test_byte_and_wordlevel_tokenizers(tmp_path):
    byte = ByteTokenizer()
    assert byte.encode("é") == [0xC3, 0xA9] and byte.decode([0xC3, 0xA9, 256, 999]) == "é" and len(byte) == 257
    assert isinstance(load_text_tokenizer(byte.save(tmp_path / "b")), ByteTokenizer)
    assert isinstance(load_text_tokenizer("bytes"), ByteTokenizer)
    word = WordLevelTokenizer(300, 256)
    assert word.encode("t35 t75 <|endoftext|> t255") == [35, 75, 256, 255]
    assert word.decode([35, 256, 257, 299, 75]) == "t35 t75"  # eot and the fixture's fillers are not words
    for bad in ("t256", "x3", "hello"):
        with pytest.raises(ValueError, match="cannot encode"):
            word.encode(bad)
    again = load_text_tokenizer(word.save(tmp_path / "w"))
    assert isinstance(again, WordLevelTokenizer) and (len(again), again.bos_id) == (300, 256)


def test_all_tokenizers_follow_the_protocol(bpe):
    for tok in (bpe, ByteTokenizer(), WordLevelTokenizer()):
        assert isinstance(tok, TextTokenizer)


def test_tokenizer_file_errors_are_one_line_and_name_the_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"{empty}/tokenizer.json") as err:
        load_text_tokenizer(empty)
    assert "\n" not in str(err.value)
    corrupt = tmp_path / "corrupt" / "tokenizer.json"
    corrupt.parent.mkdir()
    corrupt.write_text('{"model": {"type": "BPE", ')
    with pytest.raises(ValueError, match=f"cannot read text tokenizer {corrupt}: not valid JSON") as err:
        load_text_tokenizer(corrupt.parent)
    assert "\n" not in str(err.value)
    for content, match in (
        ({"unif2ace_tokenizer": "sentencepiece"}, "unknown kind 'sentencepiece'"),
        ({"unif2ace_tokenizer": "wordlevel", "size": 300}, "lacks 'eot'"),
        ({"version": "1.0", "model": {"type": "nonsense"}}, "cannot read text tokenizer"),
    ):
        corrupt.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=match):
            load_text_tokenizer(corrupt)


def test_ranks_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="gpt2.tiktoken.*openai-whisper"):
        TiktokenGPT2Tokenizer.from_ranks_file(tmp_path / "gpt2.tiktoken")
    pytest.importorskip("tiktoken")
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("IQ== 0\nnot-a-line\n")
    with pytest.raises(ValueError, match=f"{bad}:2"):
        TiktokenGPT2Tokenizer.from_ranks_file(bad)
    bad.write_text("\n")
    with pytest.raises(ValueError, match="no ranks"):
        load_text_tokenizer(f"tiktoken:{bad}")


@pytest.fixture(scope="module")
def gpt2_pair():
    pytest.importorskip("tiktoken")
    path = find_ranks_file()
    if path is None:
        pytest.skip("gpt2.tiktoken not available (extract it from the openai-whisper sdist: docs/tokenizers.md)")
    return path, TiktokenGPT2Tokenizer.from_ranks_file(path), hf_gpt2_tokenizer(path)


def _whitespace_heavy_texts(n: int) -> list[str]:
    rng = random.Random(0)
    alphabet = [*"ab c\t\né😀'.,0", "  ", "   ", "\t\t", "ASSISTANT:", "<|endoftext|>"]
    fixed = [
        "Hello world",
        "def f():\n        return 1\n\t\tpass",
        "a" + " " * 40 + "b",
        " " * 31,
        " " * 33,
        "\t" * 11,
        "It's 2024; numbers 12345 and émojis 😀 've 're",
    ]
    return fixed + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 50))) for _ in range(n)]


def test_gpt2_phi_ids_match_hf_tokenizers(gpt2_pair):
    path, tok, hf = gpt2_pair
    assert hashlib.sha256(path.read_bytes()).hexdigest() == text_module.GPT2_RANKS_SHA256
    assert (len(tok), tok.bos_id, tok.eos_id) == (50295, 50256, 50256) and hf.get_vocab_size() == 50295
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's published ids
    assert tok.encode(" " * 31) == [50257] and tok.encode("  ") == [50286]  # phi's added_tokens.json
    assert tok.encode("\t" * 9) == [50287] and tok.encode("\t\t") == [50294]
    # HF (and so Show-o) turns a typed "<|endoftext|>" into 50256; we encode it as text (no injection)
    assert hf.encode("a<|endoftext|>", add_special_tokens=False).ids == [64, 50256]
    assert tok.encode("a<|endoftext|>") == [64, 27, 91, 437, 1659, 5239, 91, 29]
    hf.encode_special_tokens = True
    try:
        for text in _whitespace_heavy_texts(1500):
            ids = tok.encode(text)
            assert ids == hf.encode(text, add_special_tokens=False).ids, repr(text)
            assert tok.eos_id not in ids and tok.decode(ids) == text
    finally:
        hf.encode_special_tokens = False


def test_gpt2_without_phi_extras_and_save_load(gpt2_pair, tmp_path):
    path, tok, _ = gpt2_pair
    plain = TiktokenGPT2Tokenizer.from_ranks_file(path, phi_extras=False)
    assert len(plain) == 50257 and max(plain.encode("a" + " " * 8 + "b")) < 50256
    for text in _whitespace_heavy_texts(200):
        assert plain.decode(plain.encode(text)) == text
    assert tok.decode([50257, 50256, 15496, 99999, 50294]) == " " * 31 + "Hello\t\t"
    assert tok.decode([50256, 15496, 50256], skip_special=False) == "<|endoftext|>Hello<|endoftext|>"
    again = load_text_tokenizer(tok.save(tmp_path / "gpt2"))
    assert isinstance(again, TiktokenGPT2Tokenizer) and len(again) == 50295
    assert again.encode(CAPTIONS[0] + "    x") == tok.encode(CAPTIONS[0] + "    x")
    assert load_text_tokenizer(f"tiktoken:{path}").encode("Hello world") == [15496, 995]


def _fake_sdist(path, member="openai_whisper-1/whisper/assets/gpt2.tiktoken", data=b"IQ== 0\nIg== 1\n"):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_find_and_extract_ranks_file(tmp_path, monkeypatch):
    monkeypatch.delenv(text_module.RANKS_ENV, raising=False)
    monkeypatch.setattr(text_module.importlib.util, "find_spec", lambda name: None)  # no installed whisper
    assert find_gpt2_ranks_file(tmp_path) is None
    _fake_sdist(tmp_path / "openai_whisper-1.tar.gz")
    found = find_gpt2_ranks_file(tmp_path / "missing", tmp_path)
    assert found == tmp_path / "gpt2.tiktoken" and found.read_text() == "IQ== 0\nIg== 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2.tiktoken", "openai_whisper-1.tar.gz"]  # one member
    other = tmp_path / "env.tiktoken"
    other.write_text("IQ== 0\n")
    monkeypatch.setenv(text_module.RANKS_ENV, str(other))
    assert find_gpt2_ranks_file(tmp_path) == other
    with pytest.raises(FileNotFoundError, match="pip download --no-deps --no-binary :all: openai-whisper"):
        extract_gpt2_ranks(tmp_path / "nope.tar.gz", tmp_path)
    with pytest.raises(ValueError, match="holds no whisper/assets/gpt2.tiktoken"):
        extract_gpt2_ranks(_fake_sdist(tmp_path / "x.tar.gz", member="pkg/README.md"), tmp_path / "out")
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(ValueError, match="cannot read openai-whisper sdist"):
        extract_gpt2_ranks(tmp_path / "bad.tar.gz", tmp_path / "out")
