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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from unif2ace.config.model import VocabConfig
from unif2ace.losses.corruption import IGNORE_INDEX
from unif2ace.model.masks import mmu_attention_mask, omni_attention_mask
from unif2ace.tokenizer.prompting import Prompter
from unif2ace.tokenizer.text import BPETokenizer, TextTokenizer
from unif2ace.tokenizer.text import load_text_tokenizer as _load_tokenizer

__all__ = ["Layout", "Layouts", "load_text_tokenizer"]


def load_text_tokenizer(
    spec: str, vocab: VocabConfig, texts: Callable[[], Iterable[str]] | None = None, cache_dir: Path | None = None
) -> TextTokenizer:
    """The text tokenizer of ``data.text_tokenizer``.

    ``bytes``, ``tiktoken:<ranks file>`` or a tokenizer file / folder are loaded; ``bpe:<size>`` is a byte-level
    BPE of that size trained on ``texts()`` (deterministic) the first time and kept in ``cache_dir``.

    Raises:
        FileNotFoundError: the tokenizer file is missing (message names ``data.text_tokenizer``).
        ValueError: its bos/eos or size do not fit ``model.vocab`` (message names the field to change).
    """
    try:
        if spec.startswith("bpe:"):
            tok = _trained_bpe(spec, texts, cache_dir)
        else:
            tok = _load_tokenizer(spec)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"data.text_tokenizer: {err}") from None
    if (tok.bos_id, tok.eos_id) != (vocab.bos_id, vocab.eos_id):
        raise ValueError(
            f"data.text_tokenizer {spec!r} has bos/eos ({tok.bos_id}, {tok.eos_id}) but model.vocab has "
            f"({vocab.bos_id}, {vocab.eos_id}); set model.vocab.bos_id / eos_id"
        )
    if len(tok) > vocab.llm_vocab_size:
        raise ValueError(
            f"data.text_tokenizer {spec!r} has {len(tok)} ids but model.vocab.llm_vocab_size is "
            f"{vocab.llm_vocab_size}; raise it to at least {len(tok)}"
        )
    return tok


def _trained_bpe(spec: str, texts: Callable[[], Iterable[str]] | None, cache_dir: Path | None) -> TextTokenizer:
    """Load ``cache_dir/tokenizer.json`` or train a BPE of the size in ``spec`` (``bpe:4096``) and save it there."""
    try:
        size = int(spec.split(":", 1)[1])
    except ValueError:
        raise ValueError(f"data.text_tokenizer {spec!r}: expected 'bpe:<vocabulary size>', e.g. bpe:4096") from None
    if cache_dir is not None and (cache_dir / "tokenizer.json").is_file():
        return BPETokenizer.load(cache_dir)
    if texts is None:
        raise FileNotFoundError(f"no trained tokenizer for {spec!r} in {cache_dir} and no texts to train it on")
    tok = BPETokenizer.train(texts(), vocab_size=size)
    if cache_dir is not None:
        tok.save(cache_dir)
    return tok


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
        self.prompter = Prompter(tokenizer, vocab, max_text_len, num_image_tokens)
        self.max_text_len, self.num_image_tokens = max_text_len, num_image_tokens
        self.seq_len = max_text_len + num_image_tokens + 3
        sid = vocab.special_id
        self.pad, self.soi, self.eoi, self.mmu_id = vocab.pad_id, sid("<|soi|>"), sid("<|eoi|>"), sid("<|mmu|>")

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids (ids outside the text range are dropped)."""
        return self.tokenizer.decode([i for i in ids if 0 <= i < self.vocab.llm_vocab_size])

    def _image(self, codes: Tensor) -> list[int]:
        if codes.numel() != self.num_image_tokens:
            raise ValueError(f"expected {self.num_image_tokens} image codes, got {codes.numel()}")
        return (codes.long() + self.vocab.image_offset).tolist()

    def t2i(self, caption: str, codes: Tensor) -> Layout:
        """T2I row for ``caption`` (``""`` = the CFG empty prompt) and clean image ``codes`` ``(N,)``.

        Built by :meth:`~unif2ace.tokenizer.prompting.Prompter.t2i` (the layout inference uses); labels are all
        ``-100`` here because the D3Diff targets are the masked image codes, kept apart in the batch.
        """
        rows = self.prompter.t2i([caption], torch.tensor([self._image(codes)]))
        ids = rows.input_ids[0]
        return Layout(ids, torch.full_like(ids, IGNORE_INDEX), rows.image_mask[0], rows.valid[0], rows.pool_mask[0])

    def mmu(self, codes: Tensor, turns: list[tuple[str, str]]) -> Layout:
        """MMU row: image ``codes`` then a conversation of ``(question, answer)`` turns (answers supervised).

        Turns are encoded piecewise exactly as :meth:`~unif2ace.tokenizer.prompting.Prompter.chat_prompt` encodes
        a history (``USER: q ASSISTANT:`` then `` a<eos>``), so the prompt the model answers at inference is the
        training row cut before an answer. Too long: later turns are dropped, then the answer is cut.
        """
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
