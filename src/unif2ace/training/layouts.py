"""Show-o sequence layouts and omni-attention masks for training rows (spec §2.4, §2.5).

Fixed-length rows so every micro-batch has the same shape ``L = max_text_len + N + 3``::

    T2I:  [PAD]*k <|t2i|> <bos> caption <eos> <|soi|> img_0 .. img_{N-1} <|eoi|>
    MMU:  <|mmu|> <|soi|> img_0 .. img_{N-1} <|eoi|> <bos> USER: q ASSISTANT: a<eos> [USER: ...] [PAD]*

Masks (True = the query may attend to the key, from :mod:`unif2ace.model.masks`): T2I rows are causal over the
text and every token of the ``<|soi|> .. <|eoi|>`` segment sees all non-pad tokens (Show-o
``create_attention_mask_predict_next`` with ``rm_pad_in_image``); MMU rows are causal with everything up to
``<|eoi|>`` visible to all queries (``create_attention_mask_for_mmu``). Only answer tokens (and their ``<eos>``) of
MMU rows carry labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from unif2ace.config.model import VocabConfig
from unif2ace.losses.corruption import IGNORE_INDEX
from unif2ace.model.masks import mmu_attention_mask, omni_attention_mask

__all__ = ["ByteTokenizer", "Layout", "Layouts", "TextTokenizer", "load_text_tokenizer"]


class TextTokenizer(Protocol):
    """What the layouts need from a text tokenizer: ``encode(text) -> list[int]`` of plain text ids."""

    def encode(self, text: str) -> list[int]:
        """Text ids of ``text`` (no special tokens)."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Text of plain text ids."""
        ...


class ByteTokenizer:
    """UTF-8 bytes as ids ``0..255``: a dependency-free tokenizer for tiny models (``llm_vocab_size >= 257``)."""

    def encode(self, text: str) -> list[int]:
        """Byte ids of ``text``."""
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        """Text of byte ids (ids >= 256 are skipped; invalid UTF-8 is replaced)."""
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


class _HFTokenizer:
    """A ``tokenizers`` JSON tokenizer without special tokens added."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids)


def load_text_tokenizer(spec: str, vocab: VocabConfig) -> TextTokenizer:
    """``"bytes"`` / ``""`` -> :class:`ByteTokenizer`; a path -> that ``tokenizer.json``.

    Raises:
        FileNotFoundError: the tokenizer file is missing (message names ``data.text_tokenizer``).
        ValueError: the byte tokenizer does not fit the vocabulary layout.
    """
    if spec in ("", "bytes"):
        if vocab.llm_vocab_size < 257 or vocab.bos_id < 256 or vocab.eos_id < 256:
            raise ValueError(
                "data.text_tokenizer=bytes needs model.vocab.llm_vocab_size >= 257 and bos/eos ids "
                ">= 256; set data.text_tokenizer to a tokenizer.json"
            )
        return ByteTokenizer()
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"data.text_tokenizer: tokenizer file not found: {path}")
    return _HFTokenizer(path)


@dataclass
class Layout:
    """One row. All fields are ``(L,)``: ids, labels (``-100`` = unsupervised) and boolean position masks."""

    input_ids: Tensor
    labels: Tensor
    image_mask: Tensor
    valid: Tensor
    pool_mask: Tensor


class Layouts:
    """Builds fixed-length T2I / MMU rows and their attention masks.

    Args:
        vocab: the id layout.
        tokenizer: text tokenizer.
        max_text_len: text budget (``data.max_text_len``).
        num_image_tokens: ``N``.
    """

    def __init__(self, vocab: VocabConfig, tokenizer: TextTokenizer, max_text_len: int, num_image_tokens: int):
        self.vocab, self.tokenizer = vocab, tokenizer
        self.max_text_len, self.num_image_tokens = max_text_len, num_image_tokens
        self.seq_len = max_text_len + num_image_tokens + 3
        sid = vocab.special_id
        self.pad, self.soi, self.eoi, self.t2i_id, self.mmu_id = (
            vocab.pad_id,
            sid("<|soi|>"),
            sid("<|eoi|>"),
            sid("<|t2i|>"),
            sid("<|mmu|>"),
        )

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids (ids outside the text range are dropped)."""
        return self.tokenizer.decode([i for i in ids if 0 <= i < self.vocab.llm_vocab_size])

    def _image(self, codes: Tensor) -> list[int]:
        if codes.numel() != self.num_image_tokens:
            raise ValueError(f"expected {self.num_image_tokens} image codes, got {codes.numel()}")
        return (codes.long() + self.vocab.image_offset).tolist()

    def t2i(self, caption: str, codes: Tensor) -> Layout:
        """T2I row for ``caption`` (``""`` = the CFG empty prompt) and clean image ``codes`` ``(N,)``."""
        text = self.tokenizer.encode(caption)[: self.max_text_len - 2] if caption else []
        body = [self.vocab.bos_id, *text, self.vocab.eos_id]
        pads = self.max_text_len - len(body)
        ids = [self.pad] * pads + [self.t2i_id] + body + [self.soi] + self._image(codes) + [self.eoi]
        input_ids = torch.tensor(ids, dtype=torch.long)
        image_mask = torch.zeros(self.seq_len, dtype=torch.bool)
        start = self.max_text_len + 2
        image_mask[start : start + self.num_image_tokens] = True
        pool = torch.zeros(self.seq_len, dtype=torch.bool)
        pool[pads : self.max_text_len + 1] = True  # task token + prompt
        return Layout(input_ids, torch.full_like(input_ids, IGNORE_INDEX), image_mask, input_ids != self.pad, pool)

    def mmu(self, codes: Tensor, turns: list[tuple[str, str]]) -> Layout:
        """MMU row: image ``codes`` then a conversation of ``(question, answer)`` turns (answers supervised)."""
        ids = [self.mmu_id, self.soi, *self._image(codes), self.eoi, self.vocab.bos_id]
        labels = [IGNORE_INDEX] * len(ids)
        for i, (question, answer) in enumerate(turns):
            q_ids = self.tokenizer.encode(("" if i == 0 else " ") + f"USER: {question} ASSISTANT:")
            a_ids = [*self.tokenizer.encode(f" {answer}"), self.vocab.eos_id]
            room = self.seq_len - len(ids) - len(q_ids)
            if room < 2 and i > 0:
                break
            if room < 2:  # the first question alone overflows: keep its tail and one answer token
                q_ids = q_ids[len(q_ids) - (self.seq_len - len(ids) - 2) :]
                room = 2
            a_ids = a_ids[:room]
            ids += q_ids + a_ids
            labels += [IGNORE_INDEX] * len(q_ids) + a_ids
        pads = self.seq_len - len(ids)
        input_ids = torch.tensor(ids + [self.pad] * pads, dtype=torch.long)
        image_mask = torch.zeros(self.seq_len, dtype=torch.bool)
        image_mask[2 : 2 + self.num_image_tokens] = True
        pool = torch.zeros(self.seq_len, dtype=torch.bool)
        pool[: self.num_image_tokens + 3] = True  # task token + image segment
        label_t = torch.tensor(labels + [IGNORE_INDEX] * pads, dtype=torch.long)
        return Layout(input_ids, label_t, image_mask, input_ids != self.pad, pool)

    def attention_mask(self, input_ids: Tensor, image_mask: Tensor, num_t2i: int) -> Tensor:
        """Omni-attention masks of a batch whose first ``num_t2i`` rows are T2I: ``(B, 1, L, L)`` bool.

        T2I rows: :func:`~unif2ace.model.masks.omni_attention_mask` (``rm_pad_in_image``); MMU rows:
        :func:`~unif2ace.model.masks.mmu_attention_mask` with each row's own ``<|eoi|>`` (the masks the inference
        engine uses, so training and sampling see the same attention pattern).
        """
        del image_mask  # the masks follow the <|soi|> / <|eoi|> / pad ids
        parts = []
        if num_t2i:
            parts.append(omni_attention_mask(input_ids[:num_t2i], self.pad, self.soi, self.eoi, rm_pad_in_image=True))
        if num_t2i < input_ids.shape[0]:
            parts.append(mmu_attention_mask(input_ids[num_t2i:], self.eoi, per_row=True))
        return torch.cat(parts)  # (B, 1, L, L)
