"""Test helper: an independent GPT-2 / phi-1.5 tokenizer built with HF ``tokenizers`` from the same ranks file.

HF's byte-level BPE needs a vocabulary of byte-to-unicode strings and an ordered merge list; both follow from
the ranks: the merge that creates a token is found by running BPE over its bytes with the lower-ranked tokens
until two parts remain. phi's 38 whitespace-run tokens are added as (non-special) added tokens, which HF splits
off before pre-tokenisation, exactly as phi's ``tokenizer.json`` declares them.
"""

from __future__ import annotations

import base64
from pathlib import Path


def find_ranks_file() -> Path | None:
    """The library's search, with ``/tmp/whisper_sdist`` (the directory docs/tokenizers.md downloads into)."""
    from unif2ace.tokenizer.text import find_gpt2_ranks_file

    return find_gpt2_ranks_file("/tmp/whisper_sdist")


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def _merge_of(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        pairs = [(ranks.get(parts[j] + parts[j + 1], rank), j) for j in range(len(parts) - 1)]
        best, j = min(pairs)
        assert best < rank, f"token {token!r} is not reachable by merges"
        parts[j : j + 2] = [parts[j] + parts[j + 1]]
    return parts[0], parts[1]


def hf_gpt2_tokenizer(ranks_path: Path, phi_extras: bool = True):
    """A ``tokenizers.Tokenizer`` equivalent to HF's GPT-2 (and, with extras, phi-1.5's) tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    from unif2ace.tokenizer.text import ENDOFTEXT, codegen_whitespace_tokens

    ranks = {}
    for line in ranks_path.read_text().splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    to_u = _byte_to_unicode()

    def u(bs: bytes) -> str:
        return "".join(to_u[b] for b in bs)

    vocab = {u(t): r for t, r in ranks.items()}
    vocab[ENDOFTEXT] = len(ranks)
    ordered = sorted(ranks.items(), key=lambda kv: kv[1])
    merges = [tuple(map(u, _merge_of(t, r, ranks))) for t, r in ordered if len(t) > 1]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([ENDOFTEXT])
    if phi_extras:
        tok.add_tokens([AddedToken(t, normalized=True) for t in codegen_whitespace_tokens()])
    return tok
