"""Show-o sequence layouts (spec §2.4; fixture README "Sequence layouts"), reproduced id for id.

``Prompter(max_text_len=M)`` corresponds to Show-o's ``UniversalPrompting(max_text_len=M)`` (which stores M + 1):

* ``t2i`` / ``t2i_gen``: ``[pad]* <|t2i|> <bos> text <eos>`` (exactly M + 1 tokens, left-padded; if longer,
  the first M tokens + eos) then ``<|soi|> image <|eoi|>``. Labels: the text block (pads -> -100), the soi id, the
  image labels, the eoi id (Show-o's ``loss_t2i`` reads them from position M + 1 on).
* ``lm``: ``<bos> text <eos>`` right-padded to ``max_len`` (longer: the first ``max_len`` tokens, no eos).
* ``mmu``: ``<|mmu|> <|soi|> image <|eoi|>`` + a text block of M tokens ``<bos> text <eos> [pad]*`` (longer: first
  M - 1 + eos); labels -100 up to and including eoi.

UniF²ace conversation layouts (spec §5, phi-1.5 template ``conv_phi_v0``) on the same image head:

* ``chat`` (training): ``<|mmu|> <|soi|> image <|eoi|> <bos> [system] USER: q ASSISTANT: a<eos> USER: ...``,
  right-padded to the MMU row length M + N + 3; only answers and their eos are supervised.
* ``chat_prompt`` (generation): the same text cut after the last ``ASSISTANT:``, left-padded so a batch decodes
  together (the engine keeps positions unshifted).
* ``caption`` / ``caption_prompt``: captioning ("Desc", spec §5) as a one-turn conversation whose question is
  :data:`DESCRIBE_PROMPT` (the paper's wording is unpublished [INF]) and whose answer is the caption.

Every method returns a :class:`PromptBatch` carrying what the model's ``RoutingContext`` needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from unif2ace.config.model import GEN, UND, VocabConfig
from unif2ace.model.interfaces import RoutingContext
from unif2ace.model.masks import decode_mask, mmu_attention_mask, omni_attention_mask
from unif2ace.tokenizer.text import TextTokenizer

IGNORE = -100
#: phi-1.5 conversation template (LLaVA ``conv_phi_v0``), spec §2.4.
SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
#: Captioning question (spec §5 [INF]; same default as ``DataConfig.describe_prompt``).
DESCRIBE_PROMPT = "Describe this person's face in detail."
Turn = tuple[str, str]


@dataclass
class PromptBatch:
    """Token rows and the side information the model needs.

    Attributes:
        input_ids: ``(B, L)`` ids.
        labels: ``(B, L)`` targets, -100 = not supervised.
        image_mask: ``(B, L)`` True at image-token positions.
        valid: ``(B, L)`` True at non-pad positions.
        pool_mask: ``(B, L)`` condition positions for the sequence router (T2I: the non-pad text block incl.
            ``<|t2i|>``; MMU / chat: every non-pad position up to and including ``<|eoi|>``; LM: none).
        group_ids: ``(B,)`` 0 = understanding, 1 = generation.
        kind: layout name (``t2i``, ``lm``, ``mmu``, ``chat``, ``chat_prompt``).
        vocab: the id layout the rows were built with (used by :meth:`attention_mask`).
    """

    input_ids: Tensor
    labels: Tensor
    image_mask: Tensor
    valid: Tensor
    pool_mask: Tensor
    group_ids: Tensor
    kind: str
    vocab: VocabConfig | None = field(default=None, repr=False, compare=False)

    def attention_mask(self, vocab: VocabConfig | None = None) -> Tensor:
        """``(B, 1, L, L)`` bool mask (True = query may attend key) for this layout.

        ``t2i``: Show-o omni-attention with ``rm_pad_in_image``; ``lm``: causal; ``mmu`` / ``chat``: causal with
        everything up to each row's ``<|eoi|>`` visible; ``chat_prompt`` (left-padded): the engine's prefill mask
        (pad keys hidden, task token + image visible to every query).
        """
        v = vocab or self.vocab
        if v is None:
            raise ValueError("attention_mask needs the vocabulary: pass vocab= (the batch was built without one)")
        soi, eoi = v.special_id("<|soi|>"), v.special_id("<|eoi|>")
        if self.kind == "chat_prompt":
            return decode_mask(self.valid, self.input_ids.shape[1], visible_prefix=self.pool_mask)
        if self.kind in ("mmu", "chat"):
            return mmu_attention_mask(self.input_ids, eoi, per_row=True)
        return omni_attention_mask(self.input_ids, v.pad_id, soi, eoi, rm_pad_in_image=self.kind == "t2i")

    def position_ids(self) -> Tensor:
        """``(B, L)`` RoPE positions.

        ``0..L-1`` for every Show-o layout (left padding does not shift positions); left-padded ``chat_prompt``
        rows start at 0 on their first real token, as the inference engine runs them.
        """
        if self.kind == "chat_prompt":
            return (self.valid.long().cumsum(1) - 1).clamp(min=0)
        return torch.arange(self.input_ids.shape[1], device=self.input_ids.device).expand_as(self.input_ids)

    def routing_context(self, features: dict[str, Tensor] | None = None, generator=None) -> RoutingContext:
        """A :class:`~unif2ace.model.interfaces.RoutingContext` for a full forward over these rows."""
        return RoutingContext(
            group_ids=self.group_ids,
            valid=self.valid,
            image_mask=self.image_mask,
            pool_mask=self.pool_mask,
            features=dict(features or {}),
            generator=generator,
        )

    def to(self, device: torch.device | str) -> PromptBatch:
        """A copy with every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self) if f.name not in ("kind", "vocab")}
        return replace(self, **moved)


class Prompter:
    """Builds Show-o layouts from texts and image ids (VQ codes + ``vocab.image_offset``).

    Args:
        tokenizer: text tokenizer (its bos/eos must equal ``vocab.bos_id`` / ``vocab.eos_id``).
        vocab: the unified id layout.
        max_text_len: Show-o's ``max_seq_length`` (text budget M).
        num_image_tokens: N.

    Raises:
        ValueError: bos/eos or the tokenizer length do not fit ``vocab``, or a budget is too small.
    """

    def __init__(self, tokenizer: TextTokenizer, vocab: VocabConfig, max_text_len: int, num_image_tokens: int):
        if max_text_len < 3:
            raise ValueError(f"max_text_len must be >= 3 (bos, one token, eos), got {max_text_len}")
        if num_image_tokens < 1:
            raise ValueError(f"num_image_tokens must be >= 1, got {num_image_tokens}")
        if (tokenizer.bos_id, tokenizer.eos_id) != (vocab.bos_id, vocab.eos_id):
            raise ValueError(
                f"tokenizer bos/eos ({tokenizer.bos_id}, {tokenizer.eos_id}) differ from the model vocabulary's "
                f"({vocab.bos_id}, {vocab.eos_id}); set model.vocab.bos_id / eos_id"
            )
        if len(tokenizer) > vocab.llm_vocab_size:
            raise ValueError(
                f"the text tokenizer has {len(tokenizer)} ids but vocab.llm_vocab_size is {vocab.llm_vocab_size}; "
                f"raise vocab.llm_vocab_size to at least {len(tokenizer)}"
            )
        self.tok, self.v, self.m, self.n = tokenizer, vocab, max_text_len, num_image_tokens
        sid = vocab.special_id
        self.soi, self.eoi, self.t2i_id, self.mmu_id = sid("<|soi|>"), sid("<|eoi|>"), sid("<|t2i|>"), sid("<|mmu|>")

    @property
    def mmu_len(self) -> int:
        """Length of ``mmu`` / ``chat`` rows: M + N + 3 (Show-o's sequence length)."""
        return self.m + self.n + 3

    # ------------------------------------------------------------------ helpers
    def _text(self, text: str) -> list[int]:
        ids = self.tok.encode(text)
        return [self.v.bos_id] if not ids else (ids if ids[0] == self.v.bos_id else [self.v.bos_id, *ids])

    def _image_rows(self, image_ids: Tensor | None, batch: int, name: str, allow_mask: bool = False) -> Tensor:
        """``(B, N)`` image ids, checked for shape and range (codes must already carry the image offset)."""
        if image_ids is None:
            return torch.full((batch, self.n), self.v.mask_id, dtype=torch.long)
        image_ids = torch.as_tensor(image_ids, dtype=torch.long).cpu()
        if image_ids.shape != (batch, self.n):
            raise ValueError(
                f"{name} must have shape ({batch}, {self.n}) = (texts, image tokens), got {tuple(image_ids.shape)}"
            )
        hi = self.v.mask_id + 1 if allow_mask else self.v.mask_id
        ok = (image_ids >= self.v.image_offset) & (image_ids < hi)
        if name.endswith("labels"):
            ok |= image_ids == IGNORE
        if not bool(ok.all()):
            raise ValueError(
                f"{name} holds ids outside the image range [{self.v.image_offset}, {hi}); "
                f"pass VQ codes + vocab.image_offset ({self.v.image_offset})"
            )
        return image_ids

    def _t2i_block(self, text: str) -> list[int]:
        ids = [self.t2i_id, *self._text(text), self.v.eos_id]
        block = self.m + 1
        return [self.v.pad_id] * (block - len(ids)) + ids if len(ids) <= block else ids[: block - 1] + [self.v.eos_id]

    def _batch(self, rows, labels, image_start: int | None, pool_end: int, kind: str) -> PromptBatch:
        """Equal-length rows -> :class:`PromptBatch`; pool = non-pad positions ``<= pool_end``."""
        ids = torch.tensor(rows, dtype=torch.long)
        lab = torch.tensor(labels, dtype=torch.long)
        b, length = ids.shape
        pos = torch.arange(length)[None].expand(b, length)
        image = torch.zeros_like(ids, dtype=torch.bool)
        if image_start is not None:
            image[:, image_start : image_start + self.n] = True
        valid = ids != self.v.pad_id
        group = torch.full((b,), GEN if kind == "t2i" else UND, dtype=torch.long)
        return PromptBatch(ids, lab, image, valid, valid & (pos <= pool_end), group, kind, self.v)

    # ------------------------------------------------------------------ Show-o layouts
    def t2i(self, texts: Sequence[str], image_ids: Tensor, image_labels: Tensor | None = None) -> PromptBatch:
        """Show-o ``t2i_prompt``: text blocks + (masked) image ids; labels include the soi/eoi ids.

        Args:
            texts: B captions (``""`` = the CFG null prompt ``<|t2i|> <bos> <eos>``).
            image_ids: ``(B, N)`` image ids, masked positions = ``vocab.mask_id``.
            image_labels: ``(B, N)`` targets (clean ids at masked positions, -100 elsewhere); None = all -100.

        Returns:
            rows of length M + N + 3, group 1 (generation).
        """
        image_ids = self._image_rows(image_ids, len(texts), "image_ids", allow_mask=True)
        if image_labels is None:
            image_labels = torch.full_like(image_ids, IGNORE)
        image_labels = self._image_rows(image_labels, len(texts), "image_labels")
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
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2 (bos, eos), got {max_len}")
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
        """Show-o ``mmu_prompt``: image then a right-padded text block of M tokens (text supervised)."""
        image_ids = self._image_rows(image_ids, len(texts), "image_ids")
        rows, labels = [], []
        for img, text in zip(image_ids.tolist(), texts, strict=True):
            ids = [*self._text(text), self.v.eos_id]
            if len(ids) <= self.m:
                ids = ids + [self.v.pad_id] * (self.m - len(ids))
            else:
                ids = ids[: self.m - 1] + [self.v.eos_id]
            head = [self.mmu_id, self.soi, *img, self.eoi]
            rows.append(head + ids)
            labels.append([IGNORE] * len(head) + [IGNORE if t == self.v.pad_id else t for t in ids])
        return self._batch(rows, labels, 2, self.n + 2, "mmu")

    # ------------------------------------------------------------------ conversations (UniF²ace)
    def _head(self, image: list[int], system: str | None) -> list[int]:
        ids = [self.mmu_id, self.soi, *image, self.eoi, self.v.bos_id]
        return ids + self.tok.encode(system) if system else ids

    def _question(self, question: str, first: bool, system: str | None) -> list[int]:
        """``USER: q ASSISTANT:``, preceded by a space unless it opens the text right after bos."""
        return self.tok.encode(("" if first and not system else " ") + f"USER: {question} ASSISTANT:")

    def _answer(self, answer: str) -> list[int]:
        return [*self.tok.encode(f" {answer}"), self.v.eos_id]

    def chat(self, image_ids: Tensor, turns: Sequence[Sequence[Turn]], system: str | None = None) -> PromptBatch:
        """Training rows of multi-turn conversations about images (spec §5), length M + N + 3.

        Each turn is encoded piecewise (question part, then `` answer<eos>``) exactly as :meth:`chat_prompt`
        encodes a history, so an inference prompt is a training row cut before an answer. Only answer tokens and
        their eos carry labels (the loss is shifted next-token CE). Too long: later turns are dropped; if the first
        turn alone overflows, the question keeps its tail (ending ``ASSISTANT:``) and the answer is cut, keeping at
        least two answer tokens.

        Args:
            image_ids: ``(B, N)`` image ids.
            turns: per row, ``(question, answer)`` pairs (at least one).
            system: optional system prompt right after bos (e.g. :data:`SYSTEM_PROMPT`).

        Raises:
            ValueError: a row without turns, a wrong ``image_ids`` shape/range, or a system prompt over the budget.
        """
        image_ids = self._image_rows(image_ids, len(turns), "image_ids")
        rows, labels = [], []
        for r, (img, conv) in enumerate(zip(image_ids.tolist(), turns, strict=True)):
            if not conv:
                raise ValueError(f"turns[{r}] is empty; give each image at least one (question, answer) pair")
            ids, lab = self._chat_row(self._head(img, system), conv, system)
            pads = self.mmu_len - len(ids)
            rows.append(ids + [self.v.pad_id] * pads)
            labels.append(lab + [IGNORE] * pads)
        return self._batch(rows, labels, 2, self.n + 2, "chat")

    def _chat_row(self, ids: list[int], conv: Sequence[Turn], system: str | None) -> tuple[list[int], list[int]]:
        """Append the turns to the head ``ids`` within ``mmu_len``; return (ids, labels)."""
        length = self.mmu_len
        if length - len(ids) < 2:
            raise ValueError(f"the system prompt leaves no room for a turn within max_text_len={self.m}")
        labels = [IGNORE] * len(ids)
        for i, (question, answer) in enumerate(conv):
            q_ids, a_ids = self._question(question, i == 0, system), self._answer(answer)
            room = length - len(ids) - len(q_ids)
            if room < 2 and i > 0:
                break
            if room < 2:  # the first question alone overflows: keep its tail and two answer tokens
                q_ids = q_ids[len(q_ids) - (length - len(ids) - 2) :]
                room = 2
            a_ids = a_ids[:room]
            ids = ids + q_ids + a_ids
            labels = labels + [IGNORE] * len(q_ids) + a_ids
        return ids, labels

    def chat_prompt(
        self,
        image_ids: Tensor,
        questions: Sequence[str],
        histories: Sequence[Sequence[Turn]] | None = None,
        system: str | None = None,
    ) -> PromptBatch:
        """Left-padded prompts ending in ``ASSISTANT:`` for answering ``questions`` about images.

        Rows are left-padded with ``<|pad|>`` to the longest prompt so that a batch decodes in lockstep; pads are
        invisible keys in :meth:`PromptBatch.attention_mask` and :meth:`PromptBatch.position_ids` starts every row
        at 0 on its first real token. Prompts are not truncated (the engine checks the position budget).

        Args:
            image_ids: ``(B, N)`` image ids (codes + image offset).
            questions: one question per row (non-empty).
            histories: earlier ``(question, answer)`` turns per row.
            system: optional system prompt (e.g. :data:`SYSTEM_PROMPT`).

        Raises:
            ValueError: an empty question, or a wrong ``image_ids`` shape/range.
        """
        image_ids = self._image_rows(image_ids, len(questions), "image_ids")
        histories = histories if histories is not None else [[] for _ in questions]
        rows = []
        for r, (img, question, history) in enumerate(zip(image_ids.tolist(), questions, histories, strict=True)):
            if not question.strip():
                raise ValueError(f"questions[{r}] is empty; ask something about the face")
            ids = self._head(img, system)
            for i, (q, a) in enumerate(history):
                ids += self._question(q, i == 0, system) + self._answer(a)
            rows.append(ids + self._question(question, not history, system))
        width = max(len(r) for r in rows)
        ids = torch.tensor([[self.v.pad_id] * (width - len(r)) + r for r in rows], dtype=torch.long)
        image = torch.zeros_like(ids, dtype=torch.bool)
        pool = torch.zeros_like(ids, dtype=torch.bool)
        for i, r in enumerate(rows):
            start = width - len(r)
            image[i, start + 2 : start + 2 + self.n] = True
            pool[i, start : start + self.n + 3] = True  # <|mmu|> <|soi|> image <|eoi|>
        group = torch.full((len(rows),), UND, dtype=torch.long)
        return PromptBatch(
            ids, torch.full_like(ids, IGNORE), image, ids != self.v.pad_id, pool, group, "chat_prompt", self.v
        )

    def caption(
        self, image_ids: Tensor, captions: Sequence[str], prompt: str = DESCRIBE_PROMPT, system: str | None = None
    ) -> PromptBatch:
        """Captioning training rows: :meth:`chat` with the single turn ``(prompt, caption)`` per image.

        Only the caption and its eos are supervised; a caption over the budget is cut (see :meth:`chat`).
        """
        return self.chat(image_ids, [[(prompt, c)] for c in captions], system)

    def caption_prompt(
        self, image_ids: Tensor, prompt: str = DESCRIBE_PROMPT, system: str | None = None
    ) -> PromptBatch:
        """Captioning inference prompts: :meth:`chat_prompt` asking ``prompt`` about every image."""
        image_ids = torch.as_tensor(image_ids)
        return self.chat_prompt(image_ids, [prompt] * image_ids.shape[0], system=system)

    # ------------------------------------------------------------------ classifier-free guidance
    @staticmethod
    def cfg_dropout(texts: Sequence[str], p: float, generator: torch.Generator | None = None) -> list[str]:
        """Replace each caption by ``""`` with probability ``p`` (Show-o ``cond_dropout_prob``, spec §2.4).

        One ``torch.rand(B)`` draw from ``generator``; :meth:`t2i` turns ``""`` into ``<|t2i|> <bos> <eos>``.

        Raises:
            ValueError: ``p`` outside [0, 1].
        """
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"cfg dropout probability p must be in [0, 1], got {p}")
        drop = torch.rand(len(texts), generator=generator) < p
        return ["" if d else t for t, d in zip(texts, drop.tolist(), strict=True)]
