"""Unshifted masked-token cross-entropy: Show-o ``loss_t2i`` (spec §2.6, §4.3).

``L_mask = (1 / sum_b |M_b|) * sum_b sum_{i in M_b} -log p(x_0^i | x_t)``: the logit at position ``i`` predicts the
label at position ``i`` (MaskGIT style, no shift); positions labelled ``-100`` are ignored; the mean runs over every
non-ignored position of the batch. Show-o takes the softmax over the full vocabulary; a column slice (for example
the image codebook) may be given instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unif2ace.losses.corruption import IGNORE_INDEX

__all__ = ["masked_token_ce", "token_ce_mean"]


def token_ce_mean(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean cross-entropy over non-ignored targets, in float32; 0 (with zero gradient) when all are ignored.

    Args:
        logits: ``(..., V)`` logits.
        targets: ``(...)`` class ids in ``[0, V)`` or ``ignore_index``.
        ignore_index: target value to skip.

    Returns:
        Scalar loss.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()  # (M, V)
    flat_targets = targets.reshape(-1)  # (M,)
    total = F.cross_entropy(flat_logits, flat_targets, ignore_index=ignore_index, reduction="sum")
    count = (flat_targets != ignore_index).sum()
    return total / count.clamp(min=1)


def masked_token_ce(
    logits: Tensor,
    labels: Tensor,
    positions: slice | None = None,
    vocab: slice | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Show-o ``loss_t2i``: unshifted CE over ``positions`` (all by default), mean over non-ignored labels.

    Args:
        logits: ``(B, L, V)`` logits.
        labels: ``(B, L)`` target ids in the full id space, ``ignore_index`` where not supervised.
        positions: sequence slice to score (Show-o: ``slice(max_seq_length + 1, None)``).
        vocab: optional column slice ``[start, stop)`` of the softmax (e.g. the image codebook); labels are then
            shifted by ``-start`` and must fall inside the slice.
        ignore_index: ignored label value.

    Returns:
        Scalar loss (float32).
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on (B, L)")
    if positions is not None:
        logits, labels = logits[:, positions], labels[:, positions]
    if vocab is not None:
        start = vocab.start or 0
        logits = logits[..., vocab]
        labels = torch.where(labels == ignore_index, ignore_index, labels - start)
    return token_ce_mean(logits, labels, ignore_index)
