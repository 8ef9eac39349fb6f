"""Perceiver resampler ``S(.)``: frozen-encoder features -> a fixed number of model-width tokens.

Spec §3.3 [IPA]: the IP-Adapter / InstantID resampler. Learned latent queries attend to the concatenation of the
projected features and themselves (Flamingo-style Perceiver attention), each layer followed by a pre-LayerNorm
feed-forward of expansion ``ff_mult``; residual connections around both. The latents are then projected to the
model width and LayerNorm'ed::

    z_0 = latents                                  (Q, dim), learned
    f   = proj_in(F)                               (T, dim)
    z_l = z_{l-1} + Attn(q = LN(z_{l-1}), kv = [LN(f); LN(z_{l-1})])
    z_l = z_l + FFN(z_l)                           FFN = LN -> Linear(dim, mult dim) -> GELU -> Linear(mult dim, dim)
    S(F) = LN(proj_out(z_depth))                   (Q, D)

Written from that description; the output is invariant to the order of the feature tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unif2ace.config.model import ResamplerConfig


class PerceiverAttention(nn.Module):
    """Latents attend to ``[features; latents]`` (multi-head, no biases).

    Args:
        dim: width of features and latents.
        heads: number of heads.
        dim_head: width of each head.
    """

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        inner = heads * dim_head
        self.norm_features = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _split(self, t: Tensor) -> Tensor:
        batch, n, _ = t.shape
        return t.view(batch, n, self.heads, self.dim_head).transpose(1, 2)  # (B, H, n, dh)

    def forward(self, features: Tensor, latents: Tensor) -> Tensor:
        """Attention update of the latents.

        Args:
            features: ``(B, T, dim)``.
            latents: ``(B, Q, dim)``.

        Returns:
            ``(B, Q, dim)`` (without the residual).
        """
        feats = self.norm_features(features)
        lat = self.norm_latents(latents)
        q = self._split(self.to_q(lat))  # (B, H, Q, dh)
        k, v = self.to_kv(torch.cat([feats, lat], dim=1)).chunk(2, dim=-1)  # each (B, T+Q, H*dh)
        out = F.scaled_dot_product_attention(q, self._split(k), self._split(v))  # (B, H, Q, dh)
        batch, _, queries, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(batch, queries, self.heads * self.dim_head))  # (B, Q, H*dh)


def _feed_forward(dim: int, mult: int) -> nn.Sequential:
    """Pre-LayerNorm FFN used between Perceiver attention layers."""
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )


class Resampler(nn.Module):
    """Perceiver resampler mapping ``(B, T, in_dim)`` features to ``(B, num_queries, out_dim)`` tokens.

    Args:
        in_dim: feature width ``E`` (e.g. 512 for an ArcFace identity embedding).
        out_dim: model width ``D``.
        cfg: inner width, depth, heads, head width, number of queries, FFN expansion.
    """

    def __init__(self, in_dim: int, out_dim: int, cfg: ResamplerConfig) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.num_queries = cfg.num_queries
        self.latents = nn.Parameter(torch.randn(1, cfg.num_queries, cfg.dim) / cfg.dim**0.5)
        self.proj_in = nn.Linear(in_dim, cfg.dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(cfg.dim, cfg.heads, cfg.dim_head), _feed_forward(cfg.dim, cfg.ff_mult)])
            for _ in range(cfg.depth)
        )
        self.proj_out = nn.Linear(cfg.dim, out_dim)
        self.norm_out = nn.LayerNorm(out_dim)

    def forward(self, features: Tensor) -> Tensor:
        """Resample features.

        Args:
            features: ``(B, T, in_dim)``.

        Returns:
            ``(B, num_queries, out_dim)``.

        Raises:
            ValueError: the feature width is not ``in_dim``.
        """
        if features.shape[-1] != self.in_dim:
            raise ValueError(
                f"resampler expects features of width {self.in_dim}, got {tuple(features.shape)}; "
                "check seq_moe.feature_dims / seq_moe.noise_dim"
            )
        x = self.proj_in(features)  # (B, T, dim)
        latents = self.latents.expand(features.shape[0], -1, -1)  # (B, Q, dim)
        for attn, ff in self.layers:
            latents = latents + attn(x, latents)
            latents = latents + ff(latents)
        return self.norm_out(self.proj_out(latents))
