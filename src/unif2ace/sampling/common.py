"""Pieces shared by the image samplers: argument checks, generators/seeds, classifier-free guidance.

CFG follows Show-o / MUSE (spec §2.7): ``logits = (1 + w) * cond - w * uncond``; ``w = 0`` skips the unconditional
branch entirely.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from unif2ace.sampling.interfaces import ImageLogitsFn
from unif2ace.utils.seed import make_generator

__all__ = ["StepCallback", "check_image_sampler_args", "guided_logits", "initial_image_ids", "resolve_generator"]

#: ``callback(step, total, ids)`` called once after every sampler step with the current ``(B, N)`` ids.
StepCallback = Callable[[int, int, Tensor], None]


def resolve_generator(generator: torch.Generator | int | None, device: torch.device | str) -> torch.Generator | None:
    """Accept a ``torch.Generator``, an int seed (-> a new generator on ``device``) or None (global RNG).

    Raises:
        ValueError: a seed that is not a non-negative int, or any other type.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return make_generator(generator, device)
    raise ValueError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


def check_image_sampler_args(
    num_tokens: int, batch: int, codebook_size: int, steps: int, guidance_scale: float
) -> None:
    """Validate the common image-sampler arguments.

    Raises:
        ValueError: one-line message naming the bad argument.
    """
    for name, value, low in (("num_tokens", num_tokens, 1), ("batch", batch, 1), ("codebook_size", codebook_size, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not isinstance(guidance_scale, (int, float)) or not guidance_scale >= 0:
        raise ValueError(f"guidance_scale must be a number >= 0 (0 disables CFG), got {guidance_scale!r}")


def initial_image_ids(
    known_tokens: Tensor | None, batch: int, num_tokens: int, codebook_size: int, device: torch.device | str | None
) -> Tensor:
    """Start state: ``known_tokens`` (mask code ``C`` where unknown) or all ``C``.

    Raises:
        ValueError: ``known_tokens`` has the wrong shape, dtype or values outside ``[0, C]``.
    """
    if known_tokens is None:
        return torch.full((batch, num_tokens), codebook_size, dtype=torch.long, device=device)
    if tuple(known_tokens.shape) != (batch, num_tokens):
        raise ValueError(f"known_tokens must have shape ({batch}, {num_tokens}), got {tuple(known_tokens.shape)}")
    if known_tokens.dtype.is_floating_point or known_tokens.dtype == torch.bool:
        raise ValueError(f"known_tokens must be an integer tensor, got {known_tokens.dtype}")
    if known_tokens.numel() and (known_tokens.min() < 0 or known_tokens.max() > codebook_size):
        raise ValueError(f"known_tokens must hold codes in [0, {codebook_size}) or the mask code {codebook_size}")
    return known_tokens.to(dtype=torch.long, device=device).clone()


def guided_logits(logits_fn: ImageLogitsFn, ids: Tensor, guidance_scale: float) -> Tensor:
    """Codebook logits with classifier-free guidance ``(1 + w) * cond - w * uncond`` (``w = 0``: one call only).

    Args:
        logits_fn: the model adapter.
        ids: ``(B, N)`` current ids (mask code ``C`` where unknown).
        guidance_scale: ``w >= 0``.

    Returns:
        ``(B, N, C)`` float32 logits.
    """
    cond = logits_fn(ids, True).float()
    if guidance_scale == 0:
        return cond
    uncond = logits_fn(ids, False).float()
    return (1 + guidance_scale) * cond - guidance_scale * uncond
