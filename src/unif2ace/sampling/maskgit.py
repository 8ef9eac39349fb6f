"""MaskGIT confidence-based parallel decoding, as Show-o's ``t2i_generate`` does it (spec §2.7, §4.6).

Per step ``k = 0 .. T-1`` with progress ``r = (k + 1) / T`` (MaskGIT, Chang et al. arXiv 2202.04200):

1. ``probs = softmax(logits)``; ``x_hat ~ Categorical(probs)`` at every position (known positions keep their code);
2. ``mask_len = max(1, min(#unknown - 1, floor(N_0 * schedule(r))))`` with ``N_0`` the row's initial number of
   unknown tokens (``N`` without known tokens, as upstream);
3. ``confidence = log p(x_hat) + temperature_k * Gumbel`` (``+inf``-like for known tokens);
4. the ``mask_len`` least confident unknown positions are masked again for the next step.

Temperature annealing: Show-o overwrites its temperature each step, ``temperature *= (1 - r)`` ("multiplicative",
the default, e.g. ``[0.75, 0.375, 0.09375, 0.0]`` for 4 steps); "linear" uses ``temperature * (1 - r)`` (MaskGIT
paper), "constant" keeps it. RNG calls per step, in this order and from one generator: ``torch.multinomial`` over
the ``(B * N, C)`` probabilities, then ``uniform_`` for the ``(B, N)`` Gumbel noise — so on the same torch version and
logits the sampled ids equal upstream's bit for bit.

[INF] Re-masking is restricted to positions that were unknown before the step. Upstream gets the same effect from
the float32-max confidence of decided tokens (``log`` = 88.7), which holds unless ``temperature * Gumbel`` exceeds
about 85; the restriction makes "known tokens never change" unconditional (inpainting / face editing).
Upstream's last step re-masks one position of its running ``input_ids`` (``mask_len`` is clamped to 1); the returned
sample is complete, as here.
"""

from __future__ import annotations

from dataclasses import dataclass

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

__all__ = ["MaskGITScheduler", "MaskGITStepOutput", "gumbel_noise", "mask_by_random_topk", "maskgit_sample"]

TEMPERATURE_DECAYS = ("multiplicative", "linear", "constant")


def _log(x: Tensor, eps: float = 1e-20) -> Tensor:
    return torch.log(x.clamp(min=eps))


def gumbel_noise(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard Gumbel noise shaped like ``like``: ``-log(-log(u))``, ``u ~ U(0, 1)`` via ``uniform_``, clamps 1e-20."""
    uniform = torch.zeros_like(like).uniform_(0, 1, generator=generator)
    return -_log(-_log(uniform))


def mask_by_random_topk(
    mask_len: Tensor,
    probs: Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """True where ``log(p) + temperature * g`` is below the row's ``mask_len``-th smallest confidence.

    Args:
        mask_len: ``(B, 1)`` number of positions to keep masked (float or int).
        probs: ``(B, N)`` confidence probabilities (known positions: float max).
        temperature: Gumbel temperature.
        generator: generator for the noise (drawn even at temperature 0, keeping the RNG stream aligned).
        noise: optional pre-drawn ``(B, N)`` Gumbel noise (then nothing is drawn).

    Returns:
        ``(B, N)`` bool, True = masked for the next step.
    """
    if noise is None:
        noise = gumbel_noise(probs, generator=generator)
    confidence = _log(probs) + temperature * noise  # (B, N)
    sorted_confidence = torch.sort(confidence, dim=-1).values
    cut_off = torch.gather(sorted_confidence, 1, mask_len.long())  # (B, 1)
    return confidence < cut_off


@dataclass
class MaskGITStepOutput:
    """Result of one :meth:`MaskGITScheduler.step`.

    Attributes:
        ids: ``(B, N)`` next state: codes, mask code ``C`` where re-masked.
        sampled_ids: ``(B, N)`` complete sample of this step (known positions kept).
        masking: ``(B, N)`` bool, True = re-masked.
        selected_probs: ``(B, N)`` probability of each sampled code (float32 max at known positions).
        mask_len: ``(B, 1)`` float number of positions re-masked per row.
        temperature: Gumbel temperature used at this step.
    """

    ids: Tensor
    sampled_ids: Tensor
    masking: Tensor
    selected_probs: Tensor
    mask_len: Tensor
    temperature: float


class MaskGITScheduler:
    """Diffusers-style scheduler: :meth:`set_timesteps` then :meth:`step` once per model call.

    Args:
        num_steps: number of decoding steps ``T``.
        schedule: mask schedule (name such as ``"cosine"``, ``"linear"``, ``"pow2"``, or a :class:`MaskSchedule`).
        temperature: initial Gumbel temperature of the re-masking confidence.
        temperature_decay: ``"multiplicative"`` (Show-o), ``"linear"`` or ``"constant"``.
        sample_temperature: softmax temperature of the token draw (1 = Show-o; 0 = argmax, no draw).
    """

    def __init__(
        self,
        num_steps: int,
        schedule: str | MaskSchedule = "cosine",
        temperature: float = 1.0,
        temperature_decay: str = "multiplicative",
        sample_temperature: float = 1.0,
    ) -> None:
        if temperature_decay not in TEMPERATURE_DECAYS:
            raise ValueError(f"temperature_decay must be one of {TEMPERATURE_DECAYS}, got {temperature_decay!r}")
        if not temperature >= 0 or not sample_temperature >= 0:
            raise ValueError(f"temperatures must be >= 0, got {temperature} and {sample_temperature}")
        self.schedule = get_mask_schedule(schedule) if isinstance(schedule, str) else schedule
        self.temperature = float(temperature)
        self.temperature_decay = temperature_decay
        self.sample_temperature = float(sample_temperature)
        self.set_timesteps(num_steps)

    def set_timesteps(self, num_steps: int) -> None:
        """Precompute per-step progress ``r_k``, mask ratios ``schedule(r_k)`` (float32) and Gumbel temperatures."""
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {num_steps!r}")
        self.num_steps = num_steps
        self.ratios = [1.0 * (k + 1) / num_steps for k in range(num_steps)]
        self.mask_ratios = [self.schedule(torch.tensor(r)) for r in self.ratios]
        temps, temp = [], self.temperature
        for r in self.ratios:
            if self.temperature_decay == "multiplicative":
                temp = temp * (1.0 - r)
            elif self.temperature_decay == "linear":
                temp = self.temperature * (1.0 - r)
            temps.append(temp)
        self.temperatures = temps

    def sample(self, logits: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw a code at every position.

        Args:
            logits: ``(B, N, C)`` codebook logits.
            generator: RNG for ``torch.multinomial``.

        Returns:
            ``(probs (B, N, C), sampled (B, N))``; probs are the untempered softmax used for the confidence.
        """
        probs = logits.softmax(dim=-1)
        if self.sample_temperature == 0:
            return probs, logits.argmax(dim=-1)
        draw = probs if self.sample_temperature == 1 else (logits / self.sample_temperature).softmax(dim=-1)
        sampled = torch.multinomial(draw.reshape(-1, logits.shape[-1]), 1, generator=generator)  # (B*N, 1)
        return probs, sampled[:, 0].view(*logits.shape[:-1])

    def remask(
        self,
        probs: Tensor,
        sampled: Tensor,
        step_index: int,
        ids: Tensor,
        generator: torch.Generator | None = None,
        num_unknown_init: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> MaskGITStepOutput:
        """Steps 2-4 of the module docstring for given draws (deterministic given ``noise``).

        Args:
            probs: ``(B, N, C)`` probabilities.
            sampled: ``(B, N)`` drawn codes.
            step_index: ``k`` in ``[0, T)``.
            ids: ``(B, N)`` current state (mask code ``C`` where unknown).
            generator: RNG of the Gumbel noise (unused when ``noise`` is given).
            num_unknown_init: ``(B, 1)`` initial unknown counts ``N_0`` (default ``N``).
            noise: optional pre-drawn ``(B, N)`` Gumbel noise.

        Returns:
            A :class:`MaskGITStepOutput`.
        """
        codebook = probs.shape[-1]
        unknown = ids == codebook  # (B, N)
        sampled = torch.where(unknown, sampled, ids)
        if num_unknown_init is None:
            num_unknown_init = torch.full_like(ids[:, :1], ids.shape[1], dtype=probs.dtype)
        selected = torch.gather(probs, -1, sampled[..., None]).squeeze(-1)  # (B, N)
        selected = torch.where(unknown, selected, torch.finfo(selected.dtype).max)
        mask_len = (num_unknown_init * self.mask_ratios[step_index].to(probs.device)).floor()  # (B, 1)
        mask_len = torch.clamp(torch.minimum(unknown.sum(dim=-1, keepdim=True) - 1, mask_len), min=1)
        temperature = self.temperatures[step_index]
        masking = mask_by_random_topk(mask_len, selected, temperature, generator=generator, noise=noise)
        masking = masking & unknown  # decided and known tokens are never re-masked
        next_ids = torch.where(masking, codebook, sampled)
        return MaskGITStepOutput(next_ids, sampled, masking, selected, mask_len, temperature)

    def step(
        self,
        logits: Tensor,
        step_index: int,
        ids: Tensor,
        generator: torch.Generator | None = None,
        num_unknown_init: Tensor | None = None,
    ) -> MaskGITStepOutput:
        """One decoding step: draw codes (``multinomial``), then re-mask the least confident (``uniform_``).

        Args:
            logits: ``(B, N, C)`` (guided) codebook logits for the state ``ids``.
            step_index: ``k`` in ``[0, T)``.
            ids: ``(B, N)`` current state, mask code ``C`` where unknown.
            generator: RNG for both draws.
            num_unknown_init: ``(B, 1)`` initial unknown counts (default ``N``).

        Returns:
            A :class:`MaskGITStepOutput`.
        """
        if not 0 <= step_index < self.num_steps:
            raise ValueError(f"step_index {step_index} outside [0, {self.num_steps}); call set_timesteps first")
        probs, sampled = self.sample(logits.float(), generator)
        return self.remask(probs, sampled, step_index, ids, generator, num_unknown_init)


def maskgit_sample(
    logits_fn: ImageLogitsFn,
    num_tokens: int,
    batch: int,
    codebook_size: int,
    steps: int,
    guidance_scale: float = 0.0,
    generator: torch.Generator | int | None = None,
    known_tokens: Tensor | None = None,
    callback: StepCallback | None = None,
    scheduler: MaskGITScheduler | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Generate ``(B, N)`` image codes with MaskGIT decoding and CFG.

    Args:
        logits_fn: model adapter ``fn(ids, cond) -> (B, N, C)`` logits.
        num_tokens: ``N`` image tokens.
        batch: ``B`` images.
        codebook_size: ``C`` (the mask code is ``C``).
        steps: decoding steps ``T >= 1``.
        guidance_scale: CFG ``w >= 0``; 0 = no unconditional call.
        generator: ``torch.Generator``, int seed or None (global RNG).
        known_tokens: optional ``(B, N)`` codes, mask code ``C`` where unknown; known positions never change.
        callback: ``callback(step, total, ids)`` after every step: the state with mask code ``C`` where still masked,
            and the complete sample after the last step.
        scheduler: a configured :class:`MaskGITScheduler` (default: cosine, temperature 1, multiplicative decay);
            its timesteps are reset to ``steps``.
        device: device of the ids when ``known_tokens`` is None (default CPU).

    Returns:
        ``(B, N)`` long codes in ``[0, C)`` (the last step's complete sample).

    Raises:
        ValueError: bad arguments, or ``logits_fn`` returns the wrong shape.
    """
    check_image_sampler_args(num_tokens, batch, codebook_size, steps, guidance_scale)
    ids = initial_image_ids(known_tokens, batch, num_tokens, codebook_size, device)
    gen = resolve_generator(generator, ids.device)
    scheduler = scheduler or MaskGITScheduler(steps)
    scheduler.set_timesteps(steps)
    num_unknown_init = (ids == codebook_size).sum(dim=-1, keepdim=True).float()  # (B, 1)
    sampled = ids
    for k in range(steps):
        logits = guided_logits(logits_fn, ids, guidance_scale)
        if logits.shape != (batch, num_tokens, codebook_size):
            raise ValueError(
                f"logits_fn returned {tuple(logits.shape)}, expected ({batch}, {num_tokens}, {codebook_size})"
            )
        out = scheduler.step(logits, k, ids, gen, num_unknown_init)
        ids, sampled = out.ids, out.sampled_ids
        if callback is not None:
            callback(k, steps, sampled if k == steps - 1 else ids)
    return sampled
