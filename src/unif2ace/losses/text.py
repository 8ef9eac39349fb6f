"""Shifted next-token cross-entropy for text: Show-o ``loss_lm`` / ``loss_mmu`` (spec §2.6, §5).

``L = mean_{j : labels[j+1] != -100} -log p(labels[j+1] | logits[j])`` — the understanding objective
``L_MMU = -sum_i log P(Y_i | Y_<i, X)`` over answer tokens (question, image and padding labelled ``-100``).
"""

from __future__ import annotations

from torch import Tensor

from unif2ace.losses.corruption import IGNORE_INDEX
from unif2ace.losses.masked_ce import token_ce_mean

__all__ = ["next_token_ce"]


def next_token_ce(logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Shifted CE: ``logits[:, :-1]`` predict ``labels[:, 1:]``; mean over non-ignored targets (float32).

    Args:
        logits: ``(B, L, V)`` logits over the full vocabulary.
        labels: ``(B, L)`` ids, ``ignore_index`` where not supervised.
        ignore_index: ignored label value.

    Returns:
        Scalar loss; 0 when no target is supervised.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on (B, L)")
    return token_ce_mean(logits[:, :-1], labels[:, 1:], ignore_index)
