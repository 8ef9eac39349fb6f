"""Mock model adapters for sampler tests (no transformer involved)."""

from __future__ import annotations

import torch
from torch import Tensor


class MockImageModel:
    """``ImageLogitsFn``: logits depend on position, on the known codes (so steps interact) and on ``cond``."""

    def __init__(self, num_tokens: int, codebook: int, seed: int = 0, scale: float = 2.0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.base = scale * torch.randn(num_tokens, codebook, generator=gen)  # (N, C)
        self.mix = torch.randn(codebook + 1, codebook, generator=gen) / codebook  # known code -> bias
        self.cond_bias = torch.randn(codebook, generator=gen)
        self.codebook = codebook
        self.calls: list[bool] = []

    def __call__(self, image_ids: Tensor, cond: bool) -> Tensor:
        self.calls.append(cond)
        assert image_ids.min() >= 0 and image_ids.max() <= self.codebook
        context = self.mix[image_ids].mean(dim=1, keepdim=True)  # (B, 1, C)
        logits = self.base[None] + context
        return logits + self.cond_bias if cond else logits


class CondOnly(MockImageModel):
    """Fails if the unconditional branch is requested."""

    def __call__(self, image_ids: Tensor, cond: bool) -> Tensor:
        if not cond:
            raise AssertionError("unconditional branch called with guidance_scale = 0")
        return super().__call__(image_ids, cond)


class MockDecoder:
    """``DecodeStepFn``: next-token logits from a table indexed by (last token, number of tokens seen).

    The cache holds per-row state (last token, length), so rows are independent and batching cannot change results.
    """

    def __init__(self, vocab: int = 12, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.table = torch.randn(vocab, 64, vocab, generator=gen)  # (last, pos, next)
        self.calls = 0

    def __call__(self, ids: Tensor, cache):
        self.calls += 1
        length = torch.full((ids.shape[0],), 0) if cache is None else cache["length"]
        length = length + ids.shape[1]
        last = ids[:, -1]
        return self.table[last, length % 64], {"length": length}
