"""Mask-ratio schedules and noise processes for absorbing (masked) discrete diffusion.

Two time conventions meet here (spec §4.2):

* **Progress** ``r`` in ``[0, 1]`` (Show-o ``models/sampling.py``, MaskGIT): ``m = schedule(r)`` is the fraction of
  tokens still masked; ``r = 0`` is fully masked. Show-o training draws ``r ~ U(0, 1)`` and masks
  ``round(N * schedule(r))`` tokens; its sampler uses ``r = (k + 1) / T`` at step ``k``.
* **Diffusion time** ``tau = 1 - r`` (SEDD ``noise_lib.py``, MDLM ``Noise``): the forward process has total noise
  ``sigma(tau)`` and rate ``sigma'(tau)`` with mask ratio ``m(tau) = 1 - exp(-sigma(tau))``, hence
  ``sigma = -log(1 - m)`` and ``sigma' = m'(tau) / (1 - m)``.

The schedules reproduce Show-o's float32 arithmetic exactly (golden ``schedule.*``); :class:`LogLinearNoise`
reproduces SEDD's ``LogLinearNoise`` (``sigma(t) = -log1p(-(1 - eps) t)``,
``sigma'(t) = (1 - eps) / (1 - (1 - eps) t)``).
Each noise object also maps a mask ratio back to ``(sigma, sigma')`` (needed by the D3Diff score term, which only
knows the row's nominal mask ratio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "CosineSchedule",
    "LinearSchedule",
    "LogLinearNoise",
    "MaskSchedule",
    "MaskingNoise",
    "Noise",
    "PowSchedule",
    "SigmoidSchedule",
    "get_mask_schedule",
]


@runtime_checkable
class MaskSchedule(Protocol):
    """Mask ratio as a function of progress ``r`` (``r = 0``: all masked), its derivative and inverse."""

    def __call__(self, r: Tensor) -> Tensor:
        """``m = schedule(r)``, elementwise, same shape and dtype as ``r``."""
        ...

    def derivative(self, r: Tensor) -> Tensor:
        """``dm/dr`` of the unclipped formula, elementwise."""
        ...

    def inverse(self, m: Tensor) -> Tensor:
        """The progress ``r`` with ``schedule(r) = m`` (unclipped formula), elementwise."""
        ...


@dataclass(frozen=True)
class CosineSchedule:
    """Show-o / MaskGIT ``m(r) = cos(pi r / 2)`` (diffusion time: ``m(tau) = sin(pi tau / 2)``)."""

    def __call__(self, r: Tensor) -> Tensor:
        """Mask ratio ``m(r)``."""
        return torch.cos(r * math.pi * 0.5)

    def derivative(self, r: Tensor) -> Tensor:
        """``dm/dr`` (unclipped)."""
        return -0.5 * math.pi * torch.sin(r * math.pi * 0.5)

    def inverse(self, m: Tensor) -> Tensor:
        """Progress ``r`` with ``m(r) = m`` (unclipped)."""
        return torch.acos(m.clamp(-1.0, 1.0)) * (2.0 / math.pi)


@dataclass(frozen=True)
class LinearSchedule:
    """Show-o ``linear_schedule``: ``m(r) = clamp(1 - r, clip_min, 1)``."""

    clip_min: float = 1e-6

    def __call__(self, r: Tensor) -> Tensor:
        """Mask ratio ``m(r)``."""
        return (1 - r).clamp(min=self.clip_min, max=1.0)

    def derivative(self, r: Tensor) -> Tensor:
        """``dm/dr`` (unclipped)."""
        return torch.full_like(r, -1.0)

    def inverse(self, m: Tensor) -> Tensor:
        """Progress ``r`` with ``m(r) = m`` (unclipped)."""
        return 1 - m


@dataclass(frozen=True)
class PowSchedule:
    """Show-o ``powK``: ``m(r) = clamp(1 - r**K, clip_min, 1)``."""

    exponent: float = 2.0
    clip_min: float = 1e-6

    def __post_init__(self) -> None:
        if not self.exponent > 0:
            raise ValueError(f"pow schedule exponent must be > 0, got {self.exponent}")

    def __call__(self, r: Tensor) -> Tensor:
        """Mask ratio ``m(r)``."""
        return (1.0 - r**self.exponent).clamp(min=self.clip_min, max=1.0)

    def derivative(self, r: Tensor) -> Tensor:
        """``dm/dr`` (unclipped)."""
        return -self.exponent * r.clamp(min=0) ** (self.exponent - 1)

    def inverse(self, m: Tensor) -> Tensor:
        """Progress ``r`` with ``m(r) = m`` (unclipped)."""
        return (1 - m).clamp(min=0) ** (1.0 / self.exponent)


@dataclass(frozen=True)
class SigmoidSchedule:
    """Show-o ``sigmoid_schedule``: ``m(r) = (v_end - sigmoid((r (end - start) + start) / tau)) / (v_end - v_start)``.

    ``v_x = sigmoid(x / tau)``; the result is clipped to ``[clip_min, 1]``.
    """

    start: float = -3.0
    end: float = 3.0
    tau: float = 1.0
    clip_min: float = 1e-6

    def __post_init__(self) -> None:
        if not (self.end > self.start and self.tau > 0):
            raise ValueError(f"sigmoid schedule needs end > start and tau > 0, got {self}")

    def _bounds(self) -> tuple[Tensor, Tensor]:
        return torch.sigmoid(torch.tensor(self.start / self.tau)), torch.sigmoid(torch.tensor(self.end / self.tau))

    def __call__(self, r: Tensor) -> Tensor:
        """Mask ratio ``m(r)``."""
        v_start, v_end = self._bounds()
        out = torch.sigmoid((r * (self.end - self.start) + self.start) / self.tau)
        return torch.clip((v_end - out) / (v_end - v_start), self.clip_min, 1.0)

    def derivative(self, r: Tensor) -> Tensor:
        """``dm/dr`` (unclipped)."""
        v_start, v_end = self._bounds()
        s = torch.sigmoid((r * (self.end - self.start) + self.start) / self.tau)
        return -s * (1 - s) * ((self.end - self.start) / self.tau) / (v_end - v_start).to(r.dtype)

    def inverse(self, m: Tensor) -> Tensor:
        """Progress ``r`` with ``m(r) = m`` (unclipped)."""
        v_start, v_end = self._bounds()
        out = (v_end - m * (v_end - v_start)).to(m.dtype)
        return (torch.logit(out) * self.tau - self.start) / (self.end - self.start)


def get_mask_schedule(name: str, **kwargs: float) -> MaskSchedule:
    """Schedule by Show-o name: ``"cosine"``, ``"linear"``, ``"pow<K>"`` (e.g. ``"pow2"``, ``"pow0.5"``), ``"sigmoid"``.

    Raises:
        ValueError: unknown name (message lists the known ones).
    """
    if name == "cosine":
        return CosineSchedule()
    if name == "linear":
        return LinearSchedule(**kwargs)
    if name == "sigmoid":
        return SigmoidSchedule(**kwargs)
    if name.startswith("pow"):
        try:
            exponent = float(name[3:])
        except ValueError:
            exponent = float("nan")
        if exponent > 0:
            return PowSchedule(exponent, **kwargs)
    raise ValueError(f"unknown mask schedule {name!r}; use 'cosine', 'linear', 'sigmoid' or 'pow<K>' such as 'pow2'")


class Noise(Protocol):
    """Absorbing forward process in diffusion time ``t`` in ``[0, 1]`` (mdlm/SEDD ``Noise`` interface)."""

    def total_noise(self, t: Tensor) -> Tensor:
        """``sigma(t)``."""
        ...

    def rate_noise(self, t: Tensor) -> Tensor:
        """``sigma'(t)``."""
        ...

    def mask_ratio(self, t: Tensor) -> Tensor:
        """``m(t) = 1 - exp(-sigma(t))``."""
        ...

    def sigma_from_mask_ratio(self, m: Tensor) -> Tensor:
        """``sigma`` at the time where the mask ratio equals ``m``."""
        ...

    def rate_from_mask_ratio(self, m: Tensor) -> Tensor:
        """``sigma'`` at the time where the mask ratio equals ``m``."""
        ...


@dataclass(frozen=True)
class LogLinearNoise:
    """SEDD log-linear noise: ``sigma(t) = -log(1 - (1 - eps) t)``, so ``m(t) = (1 - eps) t``."""

    eps: float = 1e-3

    def __call__(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(sigma(t), sigma'(t))`` as SEDD's ``Noise.forward``."""
        return self.total_noise(t), self.rate_noise(t)

    def total_noise(self, t: Tensor) -> Tensor:
        """``sigma(t)``."""
        return -torch.log1p(-(1 - self.eps) * t)

    def rate_noise(self, t: Tensor) -> Tensor:
        """``sigma'(t)``."""
        return (1 - self.eps) / (1 - (1 - self.eps) * t)

    def mask_ratio(self, t: Tensor) -> Tensor:
        """``m(t) = 1 - exp(-sigma(t))``."""
        return (1 - self.eps) * t

    def sigma_from_mask_ratio(self, m: Tensor) -> Tensor:
        """``sigma = -log(1 - m)``."""
        return -torch.log1p(-m)

    def rate_from_mask_ratio(self, m: Tensor) -> Tensor:
        """``sigma'`` at mask ratio ``m``."""
        return (1 - self.eps) / (1 - m)


@dataclass(frozen=True)
class MaskingNoise:
    """The absorbing process induced by a mask schedule: ``m(tau) = schedule(1 - tau)`` (spec §4.2).

    ``sigma(tau) = -log(1 - m)``, ``sigma'(tau) = m'(tau) / (1 - m)`` with ``m'(tau) = -schedule'(1 - tau)``.
    For the cosine schedule ``sigma' * r = (pi / 2) sqrt(1 - m^2) / m`` where ``r = (1 - m) / m`` (spec §4.5).
    """

    schedule: MaskSchedule = CosineSchedule()

    def __call__(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(sigma(t), sigma'(t))``."""
        return self.total_noise(t), self.rate_noise(t)

    def mask_ratio(self, t: Tensor) -> Tensor:
        """``m(t) = 1 - exp(-sigma(t))``."""
        return self.schedule(1 - t)

    def total_noise(self, t: Tensor) -> Tensor:
        """``sigma(t)``."""
        return self.sigma_from_mask_ratio(self.mask_ratio(t))

    def rate_noise(self, t: Tensor) -> Tensor:
        """``sigma'(t)``."""
        return -self.schedule.derivative(1 - t) / (1 - self.mask_ratio(t))

    def sigma_from_mask_ratio(self, m: Tensor) -> Tensor:
        """``sigma = -log(1 - m)``."""
        return -torch.log1p(-m)

    def rate_from_mask_ratio(self, m: Tensor) -> Tensor:
        """``sigma'`` at mask ratio ``m``."""
        return -self.schedule.derivative(self.schedule.inverse(m)) / (1 - m)
