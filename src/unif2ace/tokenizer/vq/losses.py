"""Training losses of the LFQ tokenizer: pixel + structural perceptual + LFQ terms + hinge PatchGAN.

Generator objective (per step ``t``)::

    L_G = w_rec · |x - x̂|_{1 or 2} + w_perc · [(1 - MS-SSIM(x, x̂)) + |∇x - ∇x̂|_1]
          + w_q · quantizer_loss + w_H · entropy_loss + λ(t) · w_adv · (-E[D(x̂)])

Discriminator (hinge, Lim & Ye 2017): ``L_D = ½ (E[relu(1 - D(x))] + E[relu(1 + D(x̂))])``; PatchGAN of Isola et
al. 2017 (pix2pix). ``λ(t)`` is 0 before ``adversarial_start`` and ramps linearly to 1 over ``adversarial_warmup``.

Perceptual term [INF]: LPIPS backbones cannot be downloaded here, so the default perceptual term is MS-SSIM plus an
image-gradient L1 — weight-free, deterministic and cheap on CPU; see docs/tokenizer.md for the trade-off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unif2ace.tokenizer.vq.config import VQLossConfig
from unif2ace.tokenizer.vq.metrics import ms_ssim
from unif2ace.tokenizer.vq.model import VQOutput


def gradient_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between horizontal and vertical finite differences of ``(B, C, H, W)`` images."""
    dx = (x[..., :, 1:] - x[..., :, :-1]) - (y[..., :, 1:] - y[..., :, :-1])
    dy = (x[..., 1:, :] - x[..., :-1, :]) - (y[..., 1:, :] - y[..., :-1, :])
    return 0.5 * (dx.abs().mean() + dy.abs().mean())


def structural_perceptual_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(1 - MS-SSIM) + gradient L1`` for images in ``[-1, 1]``; scalar, fp32."""
    x, y = x.float(), y.float()
    return (1.0 - ms_ssim(x, y)).mean() + gradient_l1(x, y)


class PatchDiscriminator(nn.Module):
    """PatchGAN: strided 4x4 convs -> one real/fake logit per receptive-field patch.

    GroupNorm instead of BatchNorm keeps the discriminator independent of batch composition (deterministic resumes).

    Args:
        in_channels: image channels.
        channels: width of the first conv.
        layers: number of stride-2 convs.
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            seq += [nn.Conv2d(width, out, 4, stride, 1), nn.GroupNorm(min(32, out // 4), out), nn.LeakyReLU(0.2)]
            width = out
        seq.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*seq)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, 1, h, w)`` patch logits."""
        return self.net(images)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss ``½ (E relu(1 - D(x)) + E relu(1 + D(x̂)))``."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss ``-E D(x̂)``."""
    return -fake_logits.mean()


def adversarial_factor(step: int, start: int, warmup: int) -> float:
    """``λ(step)``: 0 before ``start``, then a linear ramp to 1 over ``warmup`` steps."""
    if step < start:
        return 0.0
    return 1.0 if warmup == 0 else min(1.0, (step - start + 1) / warmup)


@dataclass
class GeneratorLoss:
    """Total generator loss and its (detached) parts for logging."""

    total: torch.Tensor
    parts: dict[str, float]


def generator_loss(
    cfg: VQLossConfig,
    images: torch.Tensor,
    out: VQOutput,
    step: int,
    discriminator: nn.Module | None = None,
) -> GeneratorLoss:
    """Combine the generator terms (see module docstring).

    Args:
        cfg: loss weights.
        images: ``(B, C, H, W)`` targets in ``[-1, 1]``.
        out: model output for ``images``.
        step: global step (adversarial warm-up).
        discriminator: the PatchGAN, or ``None`` when no adversarial term is used.

    Returns:
        :class:`GeneratorLoss`.
    """
    recon = out.reconstruction.float()
    diff = recon - images.float()
    pixel = diff.abs().mean() if cfg.recon == "l1" else (diff**2).mean()
    total = cfg.recon_weight * pixel
    parts = {"pixel": float(pixel.detach())}
    if cfg.perceptual == "msssim" and cfg.perceptual_weight > 0:
        perceptual = structural_perceptual_loss(recon, images)
        total = total + cfg.perceptual_weight * perceptual
        parts["perceptual"] = float(perceptual.detach())
    total = total + cfg.quantizer_weight * out.quant.quantizer_loss + cfg.entropy_weight * out.quant.entropy_loss
    parts["quantizer"] = float(out.quant.quantizer_loss.detach())
    parts["entropy"] = float(out.quant.entropy_loss.detach())
    factor = adversarial_factor(step, cfg.adversarial_start, cfg.adversarial_warmup)
    if discriminator is not None and cfg.adversarial_weight > 0 and factor > 0:
        g_adv = hinge_g_loss(discriminator(recon))
        total = total + factor * cfg.adversarial_weight * g_adv
        parts["g_adv"] = float(g_adv.detach())
    parts["loss"] = float(total.detach())
    return GeneratorLoss(total=total, parts=parts)
