"""Ancestral sampler for absorbing (masked) discrete diffusion, MDLM / SEDD "analytic" style (spec §4.6).

Time runs from ``tau = 1`` (all masked) to ``tau = 0`` on a uniform grid of ``T`` steps, with mask ratio
``m(tau) = schedule(1 - tau)``. From ``tau`` to ``s < tau`` the exact reverse transition of the absorbing process with
a denoiser ``p_theta(x_0 | x_tau)`` (MDLM, Sahoo et al. arXiv 2406.07524, Eq. 7; equal to SEDD's analytic update with
the score ``r * p_theta``) is, for every still-masked position independently::

    P(unmask) = (m(tau) - m(s)) / m(tau),     value ~ p_theta(. | x_tau)   (CFG applied to the logits)

Unmasked and known tokens never change; the last step uses ``m(0) = 0`` so every position ends unmasked.
RNG calls per step: ``torch.multinomial`` over ``(B * N, C)`` then ``torch.rand(B, N)`` for the unmask decisions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from unif2ace.losses.schedules import MaskSchedule, get_mask_schedule
from unif2ace.sampling.common import (
    StepCallback,
    check_image_sampler_args,
    guided_logits,
    initial_image_ids,
    resolve_generator,
)
from unif2ace.sampling.interfaces import ImageLogitsFn

__all__ = ["ancestral_sample", "unmask_probabilities"]


def unmask_probabilities(schedule: MaskSchedule, steps: int) -> list[float]:
    """``(m(tau_k) - m(tau_{k+1})) / m(tau_k)`` for ``tau_k = 1 - k / T``; the last entry is 1.

    Args:
        schedule: mask schedule in progress units (``m(tau) = schedule(1 - tau)``).
        steps: ``T``.

    Returns:
        ``T`` probabilities in ``[0, 1]``.
    """
    grid = schedule(torch.arange(steps + 1, dtype=torch.float64) / steps)  # (T + 1,) mask ratios, m[0] = 1
    grid[-1] = 0.0
    probs = ((grid[:-1] - grid[1:]) / grid[:-1].clamp(min=1e-12)).clamp(0.0, 1.0)
    probs[-1] = 1.0
    return probs.tolist()


def _draw(logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
    """``(B, N)`` codes from ``(B, N, C)`` logits (temperature 0 = argmax, no draw)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = (logits / temperature).softmax(dim=-1)
    sampled = torch.multinomial(probs.reshape(-1, logits.shape[-1]), 1, generator=generator)  # (B*N, 1)
    return sampled[:, 0].view(*logits.shape[:-1])


def ancestral_sample(
    logits_fn: ImageLogitsFn,
    num_tokens: int,
    batch: int,
    codebook_size: int,
    steps: int,
    guidance_scale: float = 0.0,
    generator: torch.Generator | int | None = None,
    known_tokens: Tensor | None = None,
    callback: StepCallback | None = None,
    schedule: str | MaskSchedule = "cosine",
    temperature: float = 1.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Generate ``(B, N)`` image codes by ancestral sampling of the absorbing reverse process.

    Args:
        logits_fn: model adapter ``fn(ids, cond) -> (B, N, C)`` logits.
        num_tokens: ``N`` image tokens.
        batch: ``B`` images.
        codebook_size: ``C`` (the mask code is ``C``).
        steps: number of reverse steps ``T >= 1``.
        guidance_scale: CFG ``w >= 0``; 0 = no unconditional call.
        generator: ``torch.Generator``, int seed or None (global RNG).
        known_tokens: optional ``(B, N)`` codes, mask code ``C`` where unknown; known positions never change.
        callback: ``callback(step, total, ids)`` after every step.
        schedule: mask schedule name or object (default Show-o cosine).
        temperature: softmax temperature of the value draw (0 = argmax).
        device: device of the ids when ``known_tokens`` is None (default CPU).

    Returns:
        ``(B, N)`` long codes in ``[0, C)``.

    Raises:
        ValueError: bad arguments, or ``logits_fn`` returns the wrong shape.
    """
    check_image_sampler_args(num_tokens, batch, codebook_size, steps, guidance_scale)
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    schedule = get_mask_schedule(schedule) if isinstance(schedule, str) else schedule
    ids = initial_image_ids(known_tokens, batch, num_tokens, codebook_size, device)
    gen = resolve_generator(generator, ids.device)
    for k, p_unmask in enumerate(unmask_probabilities(schedule, steps)):
        unknown = ids == codebook_size  # (B, N)
        if p_unmask > 0 and bool(unknown.any()):
            logits = guided_logits(logits_fn, ids, guidance_scale)
            if logits.shape != (batch, num_tokens, codebook_size):
                raise ValueError(
                    f"logits_fn returned {tuple(logits.shape)}, expected ({batch}, {num_tokens}, {codebook_size})"
                )
            sampled = _draw(logits, temperature, gen)
            u = torch.rand(ids.shape, device=ids.device, generator=gen)  # (B, N)
            ids = torch.where(unknown & (u < p_unmask), sampled, ids)
        if callback is not None:
            callback(k, steps, ids)
    return ids
