"""Forward corruption of image tokens: Show-o's count-based masking and SEDD's i.i.d. absorbing transition.

* :func:`mask_tokens` = Show-o ``training/utils.py::mask_or_random_replace_tokens`` (mask branch; spec §2.6, §4.2):
  per row ``t ~ U(0, 1)``, ``m = schedule(t)`` (clipped below at ``min_masking_rate``),
  ``n = round(N m).clamp(min=1)`` and the ``n`` positions with the smallest ranks of ``rand(B, N).argsort(-1)``
  are replaced by the mask id. Exactly ``n`` tokens are masked (not i.i.d.).
* :func:`sample_transition` = SEDD ``graph_lib.Absorbing.sample_transition``: each token independently becomes the
  absorbing id with probability ``1 - exp(-sigma)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from unif2ace.losses.schedules import MaskSchedule

__all__ = ["IGNORE_INDEX", "MaskedTokens", "mask_tokens", "sample_transition"]

#: Label value ignored by every cross-entropy in this package (PyTorch / Show-o convention).
IGNORE_INDEX = -100


@dataclass
class MaskedTokens:
    """Output of :func:`mask_tokens`.

    Attributes:
        input_ids: ``(B, N)`` ids with masked positions set to the mask id.
        labels: ``(B, N)`` original ids at masked positions, ``-100`` elsewhere.
        mask: ``(B, N)`` bool, True where masked.
        mask_prob: ``(B,)`` nominal mask ratio ``m`` of each row (float).
        timesteps: ``(B,)`` the progress ``t`` each row was drawn at (``m = schedule(t)``).
    """

    input_ids: Tensor
    labels: Tensor
    mask: Tensor
    mask_prob: Tensor
    timesteps: Tensor


def mask_tokens(
    image_ids: Tensor,
    mask_id: int,
    schedule: MaskSchedule,
    generator: torch.Generator | None = None,
    min_masking_rate: float = 0.0,
    timesteps: Tensor | None = None,
) -> MaskedTokens:
    """Mask a random subset of ``round(N * schedule(t))`` tokens per row (Show-o semantics).

    With ``generator=None`` the draws come from the global torch RNG in upstream order (``torch.rand(B)`` then
    ``torch.rand(B, N)``), so under the same ``torch.manual_seed`` the result equals Show-o's bit for bit.

    Args:
        image_ids: ``(B, N)`` token ids (any id space; only copied).
        mask_id: id written at masked positions.
        schedule: mask schedule ``m = schedule(t)``.
        generator: optional ``torch.Generator`` on ``image_ids.device``.
        min_masking_rate: lower clip of ``m`` (Show-o ``training.min_masking_rate``).
        timesteps: optional ``(B,)`` progress values to use instead of drawing ``t ~ U(0, 1)`` (no draw then).

    Returns:
        A :class:`MaskedTokens`.

    Raises:
        ValueError: ``image_ids`` is not 2-D or ``timesteps`` has the wrong shape.
    """
    if image_ids.dim() != 2:
        raise ValueError(f"image_ids must be (B, N), got shape {tuple(image_ids.shape)}")
    batch, num = image_ids.shape
    device = image_ids.device
    if timesteps is None:
        timesteps = torch.rand(batch, device=device, generator=generator)
    elif timesteps.shape != (batch,):
        raise ValueError(f"timesteps must have shape ({batch},), got {tuple(timesteps.shape)}")
    mask_prob = schedule(timesteps).clip(min_masking_rate)
    num_masked = (num * mask_prob).round().clamp(min=1)  # (B,)
    ranks = torch.rand(batch, num, device=device, generator=generator).argsort(dim=-1)  # (B, N)
    mask = ranks < num_masked.unsqueeze(-1)
    input_ids = torch.where(mask, mask_id, image_ids)
    labels = torch.where(mask, image_ids, IGNORE_INDEX)
    return MaskedTokens(input_ids, labels, mask, mask_prob, timesteps)


def sample_transition(
    x0: Tensor,
    sigma: Tensor,
    mask_id: int,
    uniforms: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SEDD absorbing forward sample: ``x_t = mask_id where u < 1 - exp(-sigma) else x0``.

    Args:
        x0: ``(B, L)`` clean ids.
        sigma: total noise, ``(B, 1)`` (or anything broadcastable to ``(B, L)``).
        mask_id: absorbing id.
        uniforms: optional ``(B, L)`` uniforms ``u``; drawn as ``torch.rand(B, L)`` (upstream call) when None.
        generator: optional generator for that draw.

    Returns:
        ``(B, L)`` perturbed ids.
    """
    move_chance = 1 - (-sigma).exp()
    if uniforms is None:
        uniforms = torch.rand(*x0.shape, device=x0.device, generator=generator)
    return torch.where(uniforms < move_chance, mask_id, x0)
