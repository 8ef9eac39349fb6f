"""VQGAN-style convolutional encoder and decoder (Esser et al., arXiv 2012.09841) in MAGVIT-v2's layout.

Module and parameter names follow Show-o's ``models/modeling_magvitv2.py`` so that upstream state dicts load with
``strict=True`` (spec §2.3): ``encoder.down.{i}.block.{j}``, ``encoder.down.{i}.downsample.conv``,
``encoder.mid.{block_1,attn_1,block_2}``, ``encoder.quant_conv``; ``decoder.post_quant_conv``,
``decoder.up.{i}.block.{j}``, ``decoder.up.{i}.upsample.conv`` (``up[i]`` is level ``i``, finest first).

Architecture: conv_in -> levels (ResnetBlocks [+ attention at ``attn_resolutions``], Downsample except the last)
-> mid (ResnetBlock, single-head spatial attention, ResnetBlock) -> GroupNorm, swish, conv_out -> quant_conv (1x1).
The decoder mirrors it: post_quant_conv (1x1) -> conv_in -> mid -> levels from coarsest to finest (ResnetBlocks,
nearest x2 Upsample + conv3x3 except level 0) -> GroupNorm, swish, conv_out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unif2ace.tokenizer.vq.config import ConvStackConfig


def swish(x: torch.Tensor) -> torch.Tensor:
    """``x · sigmoid(x)`` (SiLU)."""
    return x * torch.sigmoid(x)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with eps 1e-6 and affine parameters, as in VQGAN."""
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


def conv3x3(c_in: int, c_out: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    """3x3 convolution."""
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=padding)


class ResnetBlock(nn.Module):
    """``x + conv(drop(swish(norm(conv(swish(norm(x)))))))`` with a 1x1 ``nin_shortcut`` when channels change.

    Args:
        c_in: input channels.
        c_out: output channels.
        groups: GroupNorm groups.
        dropout: dropout before the second conv.
    """

    def __init__(self, c_in: int, c_out: int, groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(c_in, groups)
        self.conv1 = conv3x3(c_in, c_out)
        self.norm2 = group_norm(c_out, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(c_out, c_out)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, kernel_size=1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, c_in, H, W)`` -> ``(B, c_out, H, W)``."""
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the ``H·W`` positions with 1x1 q/k/v/proj_out, scale ``C^-1/2``; residual."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        batch, channels, height, width = x.shape
        h = self.norm(x)

        def tokens(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, 1, channels, height * width).transpose(-1, -2)  # (B, 1, HW, C)

        out = F.scaled_dot_product_attention(tokens(self.q(h)), tokens(self.k(h)), tokens(self.v(h)))
        out = out.transpose(-1, -2).reshape(batch, channels, height, width)  # (B, C, H, W)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Zero-pad right/bottom by one, then 3x3 conv with stride 2: ``(B, C, H, W)`` -> ``(B, C, H/2, W/2)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(channels, channels, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Halve the spatial size."""
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour x2 then 3x3 conv: ``(B, C, H, W)`` -> ``(B, C, 2H, 2W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Double the spatial size."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: ``block`` (ResnetBlocks), ``attn`` (one per block or empty) and an optional resampler."""

    def __init__(self, blocks: list[nn.Module], attns: list[nn.Module]) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)

    def run_blocks(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        return h


class _Mid(nn.Module):
    """ResnetBlock -> AttnBlock -> ResnetBlock at the coarsest resolution."""

    def __init__(self, channels: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups, dropout)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, groups, dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


def _make_level(c_in: int, c_out: int, n_blocks: int, use_attn: bool, cfg: ConvStackConfig) -> tuple[_Level, int]:
    blocks, attns = [], []
    for _ in range(n_blocks):
        blocks.append(ResnetBlock(c_in, c_out, cfg.norm_groups, cfg.dropout))
        c_in = c_out
        if use_attn:
            attns.append(AttnBlock(c_in, cfg.norm_groups))
    return _Level(blocks, attns), c_in


class Encoder(nn.Module):
    """Image -> pre-quantisation latents ``(B, 3, H, W)`` -> ``(B, z, H/f, W/f)``, ``f = 2^(len(ch_mult)-1)``.

    Args:
        cfg: tower sizes.
        in_channels: image channels.
        z_channels: latent channels (= LFQ bits).
        resolution: nominal input size (places attention blocks).
    """

    def __init__(self, cfg: ConvStackConfig, in_channels: int, z_channels: int, resolution: int) -> None:
        super().__init__()
        self.conv_in = conv3x3(in_channels, cfg.ch)
        self.down = nn.ModuleList()
        in_mult = (1, *cfg.ch_mult)
        res, channels = resolution, cfg.ch
        for i, mult in enumerate(cfg.ch_mult):
            level, channels = _make_level(
                cfg.ch * in_mult[i], cfg.ch * mult, cfg.num_res_blocks[i], res in cfg.attn_resolutions, cfg
            )
            if i != len(cfg.ch_mult) - 1:
                level.downsample = Downsample(channels)
                res //= 2
            self.down.append(level)
        self.mid = _Mid(channels, cfg.norm_groups, cfg.dropout)
        self.norm_out = group_norm(channels, cfg.norm_groups)
        self.conv_out = conv3x3(channels, z_channels)
        self.quant_conv = nn.Conv2d(z_channels, z_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_img, H, W)`` -> ``(B, z, H/f, W/f)``."""
        h = self.conv_in(x)
        for level in self.down:
            h = level.run_blocks(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        h = self.conv_out(swish(self.norm_out(h)))
        return self.quant_conv(h)


class Decoder(nn.Module):
    """Quantised latents -> image ``(B, z, h, w)`` -> ``(B, C_img, h·f, w·f)``.

    Args:
        cfg: tower sizes (``ch_mult[0]`` is the finest level).
        out_channels: image channels.
        z_channels: latent channels (= LFQ bits).
        resolution: nominal output size (places attention blocks).
    """

    def __init__(self, cfg: ConvStackConfig, out_channels: int, z_channels: int, resolution: int) -> None:
        super().__init__()
        levels = len(cfg.ch_mult)
        channels = cfg.ch * cfg.ch_mult[-1]
        res = resolution // 2 ** (levels - 1)
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, kernel_size=1)
        self.conv_in = conv3x3(z_channels, channels)
        self.mid = _Mid(channels, cfg.norm_groups, cfg.dropout)
        built: list[_Level] = []
        for i in reversed(range(levels)):
            level, channels = _make_level(
                channels, cfg.ch * cfg.ch_mult[i], cfg.num_res_blocks[i], res in cfg.attn_resolutions, cfg
            )
            if i != 0:
                level.upsample = Upsample(channels)
                res *= 2
            built.append(level)
        self.up = nn.ModuleList(reversed(built))  # up[i] = level i (finest first), as upstream
        self.norm_out = group_norm(channels, cfg.norm_groups)
        self.conv_out = conv3x3(channels, out_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, z, h, w)`` -> ``(B, C_img, h·f, w·f)`` (unclamped, nominally in [-1, 1])."""
        h = self.mid(self.conv_in(self.post_quant_conv(z)))
        for level in reversed(self.up):
            h = level.run_blocks(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))
