"""Reconstruction metrics (PSNR, SSIM, MS-SSIM) and codebook-usage tracking for the LFQ tokenizer.

SSIM follows Wang et al. 2004 (Gaussian window 11, sigma 1.5, K1 = 0.01, K2 = 0.03, valid filtering); MS-SSIM
follows Wang et al. 2003 (contrast-structure terms at the finer scales, full SSIM at the coarsest, the standard five
exponents truncated and renormalised when the image is too small for five scales). Images are in ``[-1, 1]``.
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``(B, C, H, W)`` images in ``[-1, 1]`` (both clamped first) -> ``(B,)``."""
    mse = ((x.clamp(-1, 1) - y.clamp(-1, 1)).float() ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(4.0 / mse.clamp_min(1e-12))  # peak-to-peak range 2


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()  # (C, 1, k, k)


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and contrast-structure per image for ``(B, C, H, W)`` images in ``[0, 1]`` -> ``(B,)`` each."""
    c1, c2 = 0.01**2, 0.03**2
    channels = x.shape[1]

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
    return ssim_map.flatten(1).mean(1), cs.flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM of ``(B, C, H, W)`` images in ``[-1, 1]`` -> ``(B,)`` (1 = identical).

    Raises:
        ValueError: images smaller than the window.
    """
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"SSIM needs images of at least {window_size} px, got {tuple(x.shape[-2:])}")
    window = _gaussian_window(window_size, sigma, x.shape[1], x.device)
    return _ssim_terms((x.float().clamp(-1, 1) + 1) / 2, (y.float().clamp(-1, 1) + 1) / 2, window)[0]


def ms_ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image multi-scale SSIM of ``(B, C, H, W)`` images in ``[-1, 1]`` -> ``(B,)``; differentiable.

    The number of scales is the largest ``M <= 5`` with ``min(H, W) / 2^(M-1) >= window_size``.
    """
    side = min(x.shape[-2:])
    if side < window_size:
        raise ValueError(f"MS-SSIM needs images of at least {window_size} px, got {tuple(x.shape[-2:])}")
    levels = 1
    while levels < len(MS_SSIM_WEIGHTS) and side // 2**levels >= window_size:
        levels += 1
    weights = torch.tensor(MS_SSIM_WEIGHTS[:levels], device=x.device)
    weights = weights / weights.sum()
    window = _gaussian_window(window_size, sigma, x.shape[1], x.device)
    x, y = (x.float() + 1) / 2, (y.float() + 1) / 2
    factors = []
    for level in range(levels):
        full, cs = _ssim_terms(x, y, window)
        factors.append(torch.relu(full if level == levels - 1 else cs))
        if level < levels - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(factors, dim=1).clamp_min(1e-8)  # (B, M); clamp keeps pow differentiable
    return torch.prod(stacked ** weights[None, :], dim=1)


class CodebookUsage:
    """Code histogram over the last ``window`` updates: usage fraction, perplexity and dead codes.

    Args:
        codebook_size: number of codes.
        window: how many recent updates (training steps) are counted.
    """

    def __init__(self, codebook_size: int, window: int) -> None:
        self.codebook_size = codebook_size
        self._window: deque[torch.Tensor] = deque(maxlen=window)
        self._counts = torch.zeros(codebook_size, dtype=torch.long)

    def update(self, codes: torch.Tensor) -> None:
        """Add a batch of codes (any shape)."""
        hist = torch.bincount(codes.detach().reshape(-1).long().cpu(), minlength=self.codebook_size)
        if len(self._window) == self._window.maxlen:
            self._counts -= self._window[0]
        self._window.append(hist)
        self._counts += hist

    @property
    def counts(self) -> torch.Tensor:
        """``(codebook_size,)`` counts over the window."""
        return self._counts.clone()

    def stats(self) -> dict[str, float]:
        """``usage`` (fraction of codes seen), ``dead_codes`` (codes never seen), ``perplexity`` (exp entropy)."""
        total = int(self._counts.sum())
        used = int((self._counts > 0).sum())
        if total == 0:
            return {"usage": 0.0, "dead_codes": float(self.codebook_size), "perplexity": 0.0}
        p = self._counts[self._counts > 0].double() / total
        entropy = float(-(p * p.log()).sum())
        return {
            "usage": used / self.codebook_size,
            "dead_codes": float(self.codebook_size - used),
            "perplexity": float(torch.tensor(entropy).exp()),
        }
