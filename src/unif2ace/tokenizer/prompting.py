"""Show-o sequence layouts (spec §2.4; fixture README "Sequence layouts"), reproduced id for id.

``Prompter(max_text_len=M)`` corresponds to Show-o's ``UniversalPrompting(max_text_len=M)`` (which stores M + 1):

* ``t2i`` / ``t2i_gen``: ``[pad]* <|t2i|> <bos> text <eos>`` (exactly M + 1 tokens, left-padded; if longer,
  the first M tokens + eos) then ``<|soi|> image <|eoi|>``. Labels: the text block (pads -> -100), the soi id, the
  image labels, the eoi id (Show-o's ``loss_t2i`` reads them from position M + 1 on).
* ``lm``: ``<bos> text <eos>`` right-padded to ``max_len`` (longer: the first ``max_len`` tokens, no eos).
* ``mmu``: ``<|mmu|> <|soi|> image <|eoi|>`` + a text block of M tokens ``<bos> text <eos> [pad]*`` (longer: first
  M - 1 + eos); labels -100 up to and including eoi.
* ``chat_prompt``: generation prompts ``<|mmu|> <|soi|> image <|eoi|> <bos> [system] USER: q ASSISTANT:``,
  left-padded so a batch decodes together (the engine keeps positions unshifted).

Every method returns a :class:`PromptBatch` carrying what the model's ``RoutingContext`` needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from unif2ace.config.model import GEN, UND, VocabConfig
from unif2ace.model.masks import mmu_attention_mask, omni_attention_mask
from unif2ace.tokenizer.text import TextTokenizer

IGNORE = -100
#: phi-1.5 conversation template (LLaVA ``conv_phi_v0``), spec §2.4.
SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


@dataclass
class PromptBatch:
    """Token rows and the side information the model needs.

    Attributes:
        input_ids: ``(B, L)`` ids.
        labels: ``(B, L)`` targets, -100 = not supervised.
        image_mask: ``(B, L)`` True at image-token positions.
        valid: ``(B, L)`` True at non-pad positions.
        pool_mask: ``(B, L)`` condition positions for the sequence router.
        group_ids: ``(B,)`` 0 = understanding, 1 = generation.
        kind: layout name (``t2i``, ``lm``, ``mmu``, ``chat``).
    """

    input_ids: Tensor
    labels: Tensor
    image_mask: Tensor
    valid: Tensor
    pool_mask: Tensor
    group_ids: Tensor
    kind: str

    def attention_mask(self, vocab: VocabConfig) -> Tensor:
        """``(B, 1, L, L)`` bool omni-attention mask for this layout."""
        soi, eoi = vocab.special_id("<|soi|>"), vocab.special_id("<|eoi|>")
        if self.kind in ("mmu", "chat"):
            return mmu_attention_mask(self.input_ids, eoi, per_row=True)
        return omni_attention_mask(self.input_ids, vocab.pad_id, soi, eoi, rm_pad_in_image=self.kind == "t2i")


class Prompter:
    """Builds Show-o layouts from texts and image ids.

    Args:
        tokenizer: text tokenizer (its bos/eos must equal ``vocab.bos_id`` / ``vocab.eos_id``).
        vocab: the unified id layout.
        max_text_len: Show-o's ``max_seq_length`` (text budget M).
        num_image_tokens: N.
    """

    def __init__(self, tokenizer: TextTokenizer, vocab: VocabConfig, max_text_len: int, num_image_tokens: int):
        if max_text_len < 3:
            raise ValueError(f"max_text_len must be >= 3, got {max_text_len}")
        if (tokenizer.bos_id, tokenizer.eos_id) != (vocab.bos_id, vocab.eos_id):
            raise ValueError(
                f"tokenizer bos/eos ({tokenizer.bos_id}, {tokenizer.eos_id}) differ from the model vocabulary's "
                f"({vocab.bos_id}, {vocab.eos_id}); set model.vocab.bos_id / eos_id"
            )
        self.tok, self.v, self.m, self.n = tokenizer, vocab, max_text_len, num_image_tokens
        sid = vocab.special_id
        self.soi, self.eoi, self.t2i_id, self.mmu_id = sid("<|soi|>"), sid("<|eoi|>"), sid("<|t2i|>"), sid("<|mmu|>")

    # ------------------------------------------------------------------ helpers
    def _text(self, text: str) -> list[int]:
        ids = self.tok.encode(text)
        return [self.v.bos_id] if not ids else (ids if ids[0] == self.v.bos_id else [self.v.bos_id, *ids])

    def _image_rows(self, image_ids: Tensor | None, batch: int, name: str) -> Tensor:
        if image_ids is None:
            return torch.full((batch, self.n), self.v.mask_id, dtype=torch.long)
        image_ids = torch.as_tensor(image_ids, dtype=torch.long)
        if image_ids.shape != (batch, self.n):
            raise ValueError(f"{name} must have shape ({batch}, {self.n}), got {tuple(image_ids.shape)}")
        return image_ids

    def _t2i_block(self, text: str) -> list[int]:
        ids = [self.t2i_id, *self._text(text), self.v.eos_id]
        block = self.m + 1
        return [self.v.pad_id] * (block - len(ids)) + ids if len(ids) <= block else ids[: block - 1] + [self.v.eos_id]

    def _batch(self, rows: list[list[int]], labels: list[list[int]], image_start: int | None, pool_end, kind: str):
        ids = torch.tensor(rows, dtype=torch.long)
        lab = torch.tensor(labels, dtype=torch.long)
        b, length = ids.shape
        pos = torch.arange(length)[None].expand(b, length)
        image = torch.zeros_like(ids, dtype=torch.bool)
        if image_start is not None:
            image[:, image_start : image_start + self.n] = True
        valid = ids != self.v.pad_id
        group = torch.full((b,), GEN if kind == "t2i" else UND, dtype=torch.long)
        return PromptBatch(ids, lab, image, valid, valid & (pos <= pool_end), group, kind)

    # ------------------------------------------------------------------ Show-o layouts
    def t2i(self, texts: Sequence[str], image_ids: Tensor, image_labels: Tensor | None = None) -> PromptBatch:
        """Show-o ``t2i_prompt``: text blocks + (masked) image ids; labels include soi/eoi ids."""
        image_ids = self._image_rows(image_ids, len(texts), "image_ids")
        image_labels = (
            self._image_rows(image_labels, len(texts), "image_labels")
            if image_labels is not None
            else (torch.full_like(image_ids, IGNORE))
        )
        rows, labels = [], []
        for text, img, lab in zip(texts, image_ids.tolist(), image_labels.tolist(), strict=True):
            block = self._t2i_block(text)
            rows.append([*block, self.soi, *img, self.eoi])
            labels.append([IGNORE if t == self.v.pad_id else t for t in block] + [self.soi, *lab, self.eoi])
        return self._batch(rows, labels, self.m + 2, self.m, "t2i")

    def t2i_gen(self, texts: Sequence[str]) -> PromptBatch:
        """Show-o ``t2i_gen_prompt``: text blocks + all-mask image (``""`` = the unconditional prompt)."""
        return self.t2i(texts, self._image_rows(None, len(texts), "image_ids"))

    def lm(self, texts: Sequence[str], max_len: int) -> PromptBatch:
        """Show-o ``lm_prompt``: ``<bos> text <eos>`` right-padded to ``max_len`` (longer: cut, no eos)."""
        rows, labels = [], []
        for text in texts:
            ids = [*self._text(text), self.v.eos_id]
            if len(ids) <= max_len:
                labels.append(ids + [IGNORE] * (max_len - len(ids)))
                ids = ids + [self.v.pad_id] * (max_len - len(ids))
            else:
                ids = ids[:max_len]
                labels.append(list(ids))
            rows.append(ids)
        return self._batch(rows, labels, None, -1, "lm")

    def mmu(self, image_ids: Tensor, texts: Sequence[str]) -> PromptBatch:
        """Show-o ``mmu_prompt``: image then a right-padded text block of M tokens (answer supervised)."""
        image_ids = self._image_rows(image_ids, len(texts), "image_ids")
        rows, labels = [], []
        for img, text in zip(image_ids.tolist(), texts, strict=True):
            ids = [*self._text(text), self.v.eos_id]
            ids = (
                ids + [self.v.pad_id] * (self.m - len(ids))
                if len(ids) <= self.m
                else ids[: self.m - 1] + [self.v.eos_id]
            )
            head = [self.mmu_id, self.soi, *img, self.eoi]
            rows.append(head + ids)
            labels.append([IGNORE] * len(head) + [IGNORE if t == self.v.pad_id else t for t in ids])
        return self._batch(rows, labels, 2, self.n + 2, "mmu")

    # ------------------------------------------------------------------ generation prompts
    def chat_prompt(
        self,
        image_ids: Tensor,
        questions: Sequence[str],
        histories: Sequence[Sequence[tuple[str, str]]] | None = None,
        system: str | None = None,
    ) -> PromptBatch:
        """Left-padded prompts ending in ``ASSISTANT:`` for answering ``questions`` about images.

        Args:
            image_ids: ``(B, N)`` image ids (codes + image offset).
            questions: one question per row (non-empty).
            histories: earlier ``(question, answer)`` turns per row.
            system: optional system prompt (e.g. :data:`SYSTEM_PROMPT`).
        """
        image_ids = self._image_rows(image_ids, len(questions), "image_ids")
        histories = histories or [[] for _ in questions]
        rows = []
        for img, question, history in zip(image_ids.tolist(), questions, histories, strict=True):
            if not question.strip():
                raise ValueError("question is empty; ask something about the face")
            ids = [self.mmu_id, self.soi, *img, self.eoi, self.v.bos_id]
            if system:
                ids += self.tok.encode(system + " ")
            for i, (q, a) in enumerate(history):  # the same piecewise encoding as the training conversations
                ids += self.tok.encode(("" if i == 0 else " ") + f"USER: {q} ASSISTANT:")
                ids += [*self.tok.encode(f" {a}"), self.v.eos_id]
            ids += self.tok.encode(("" if not history else " ") + f"USER: {question} ASSISTANT:")
            rows.append(ids)
        width = max(len(r) for r in rows)
        padded = [[self.v.pad_id] * (width - len(r)) + r for r in rows]
        ids = torch.tensor(padded, dtype=torch.long)
        image = torch.zeros_like(ids, dtype=torch.bool)
        pool = torch.zeros_like(ids, dtype=torch.bool)
        for i, r in enumerate(rows):
            start = width - len(r)
            image[i, start + 2 : start + 2 + self.n] = True
            pool[i, start : start + self.n + 3] = True
        valid = ids != self.v.pad_id
        return PromptBatch(
            ids,
            torch.full_like(ids, IGNORE),
            image,
            valid,
            pool,
            torch.full((len(rows),), UND, dtype=torch.long),
            "chat",
        )
