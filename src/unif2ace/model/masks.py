"""Omni-attention masks (spec §2.5; Show-o ``training/prompting_utils.py``, reproduced tensor for tensor).

All masks are boolean ``(B, 1, Lq, Lk)`` with True = the query row may attend the key column;
:func:`to_additive` turns them into the additive float form Show-o feeds its attention.

* :func:`omni_attention_mask` — T2I / LM rows: text causal; every row of the ``<|soi|> .. <|eoi|>`` segment sees
  the whole sequence (bidirectional over the image, full view of the prompt); with ``rm_pad_in_image`` image
  rows skip pad columns and text rows after the pad block skip columns ``0..last_pad``.
* :func:`mmu_attention_mask` — MMU rows: causal, plus every row sees columns ``0..eoi``. Upstream uses the eoi
  position of the *first* row for the whole batch (quirk kept by default for exactness); ``per_row=True`` uses
  each row's own eoi — what our training path uses (identical when all rows share a layout, as ours do).
* :func:`decode_mask` — queries of an incremental forward against cached + new keys (KV-cache decoding steps;
  with ``visible_prefix`` also MMU prefill chunks).
* :func:`segment_mask` — the ``<|soi|> image <|eoi|>`` rows against a cached text prefix (T2I sampling with the
  prompt computed once): exactly the segment rows of :func:`omni_attention_mask`.

Blocked entries become ``finfo(dtype).min`` in :func:`to_additive`; Show-o uses ``float(iinfo(int64).min)``
(-9.2e18) in float32. Both underflow to probability 0 after softmax; the fixtures compare ``mask == 0`` only.
"""

from __future__ import annotations

import torch
from torch import Tensor


def causal_mask(length: int, device: torch.device | str | None = None) -> Tensor:
    """``(L, L)`` lower-triangular bool mask."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def image_segment(ids: Tensor, soi_id: int, eoi_id: int) -> Tensor:
    """``(B, L)`` bool: positions from ``<|soi|>`` to ``<|eoi|>`` inclusive."""
    soi, eoi = ids == soi_id, ids == eoi_id
    return (soi.cumsum(1) > eoi.cumsum(1)) | soi | eoi


def omni_attention_mask(ids: Tensor, pad_id: int, soi_id: int, eoi_id: int, rm_pad_in_image: bool = True) -> Tensor:
    """Show-o's ``create_attention_mask_predict_next`` as a bool mask.

    Args:
        ids: ``(B, L)`` token ids.
        pad_id: id of ``<|pad|>``.
        soi_id: id of ``<|soi|>``.
        eoi_id: id of ``<|eoi|>``.
        rm_pad_in_image: drop pad columns for image rows and the pad block for later text rows.

    Returns:
        ``(B, 1, L, L)`` bool mask.
    """
    b, n = ids.shape
    dev = ids.device
    in_img = image_segment(ids, soi_id, eoi_id)  # (B, L)
    text = causal_mask(n, dev).expand(b, n, n).clone()  # (B, Lq, Lk)
    image = torch.ones(b, n, n, dtype=torch.bool, device=dev)
    if rm_pad_in_image:
        pad = ids == pad_id  # (B, L)
        pos = torch.arange(n, device=dev)
        last_pad = torch.where(pad, pos, torch.full_like(pos, -1)).amax(1)  # (B,), -1 when no pad
        after = pos[None, :, None] > last_pad[:, None, None]  # (B, Lq, 1)
        before = pos[None, None, :] <= last_pad[:, None, None]  # (B, 1, Lk)
        text &= ~(after & before)
        image &= ~pad[:, None, :]
    mask = torch.where(in_img[:, :, None], image, text)
    return mask[:, None]


def mmu_attention_mask(ids: Tensor, eoi_id: int, per_row: bool = False) -> Tensor:
    """Show-o's ``create_attention_mask_for_mmu`` as a bool mask.

    Args:
        ids: ``(B, L)`` token ids with one ``<|eoi|>`` per row.
        eoi_id: id of ``<|eoi|>``.
        per_row: use each row's own eoi position (default: the first row's, as upstream).

    Returns:
        ``(B, 1, L, L)`` bool mask.

    Raises:
        ValueError: no ``<|eoi|>`` in a row that needs one.
    """
    b, n = ids.shape
    has = (ids == eoi_id).any(1)
    if not (has.all() if per_row else has[0]):
        raise ValueError("mmu_attention_mask: every MMU row needs an <|eoi|> token")
    eoi = (ids == eoi_id).int().argmax(1)  # (B,) first eoi per row
    if not per_row:
        eoi = eoi[:1].expand(b)
    cols = torch.arange(n, device=ids.device)[None, None, :] <= eoi[:, None, None]  # (B, 1, Lk)
    return (causal_mask(n, ids.device)[None] | cols)[:, None]


def decode_mask(key_valid: Tensor, num_new: int, visible_prefix: Tensor | None = None) -> Tensor:
    """Mask for ``num_new`` queries appended after ``T = Lk - num_new`` cached keys.

    Queries see every valid cached key and the new keys causally; ``visible_prefix`` ``(B, Lk)`` (optional)
    marks keys every query may see regardless of causality (e.g. a bidirectional image block).

    Args:
        key_valid: ``(B, Lk)`` bool, False at pad keys.
        num_new: number of new query positions (the last ``num_new`` keys).
        visible_prefix: optional ``(B, Lk)`` bool keys visible to all queries.

    Returns:
        ``(B, 1, num_new, Lk)`` bool mask; each query always sees itself.
    """
    b, lk = key_valid.shape
    dev = key_valid.device
    q_pos = torch.arange(lk - num_new, lk, device=dev)  # (Lq,)
    k_pos = torch.arange(lk, device=dev)
    mask = (k_pos[None, :] <= q_pos[:, None])[None] & key_valid[:, None, :]  # (B, Lq, Lk)
    if visible_prefix is not None:
        mask |= visible_prefix[:, None, :] & key_valid[:, None, :]
    mask |= (k_pos[None, :] == q_pos[:, None])[None]
    return mask[:, None]


def segment_mask(prefix_valid: Tensor, segment_len: int, rm_pad_in_image: bool = True) -> Tensor:
    """Rows of an image segment (``<|soi|> image <|eoi|>``) appended after a cached text prefix.

    Omni-attention gives every segment row the whole sequence: all prefix keys (pads excluded when
    ``rm_pad_in_image``) and every segment key, bidirectionally. Equal to
    ``omni_attention_mask(cat(prefix, segment))[:, :, P:, :]`` (tested).

    Args:
        prefix_valid: ``(B, P)`` bool, False at pad positions of the cached prefix.
        segment_len: S, the segment length (N image tokens + 2).
        rm_pad_in_image: hide prefix pads (Show-o's T2I setting).

    Returns:
        ``(B, 1, S, P + S)`` bool mask.
    """
    b, p = prefix_valid.shape
    keys = prefix_valid if rm_pad_in_image else torch.ones_like(prefix_valid)
    keys = torch.cat([keys, keys.new_ones(b, segment_len)], dim=1)  # (B, P + S)
    return keys[:, None, None, :].expand(b, 1, segment_len, p + segment_len).clone()


def to_additive(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Bool mask -> additive mask: 0 where allowed, ``finfo(dtype).min`` where blocked.

    Args:
        mask: bool mask of any shape, True = allowed.
        dtype: floating dtype of the attention scores.

    Returns:
        tensor of ``mask``'s shape and ``dtype``.
    """
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
