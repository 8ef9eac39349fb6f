"""Multi-head self-attention of the Show-o Phi block (spec §2.1, fixture README "quirks" 1).

q/k/v projections with biases -> per-head affine LayerNorm on q and k (Show-o forces ``qk_layernorm``) ->
partial RoPE -> PyTorch SDPA with the caller's mask (omni-attention masks are built outside the model, in
:mod:`unif2ace.model.masks`) -> output projection ``dense``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unif2ace.config.model import ModelConfig
from unif2ace.model.kv_cache import KVCache
from unif2ace.model.layers import RotaryEmbedding


class Attention(nn.Module):
    """Self-attention with QK LayerNorm, partial rotary embedding and an optional KV cache.

    Args:
        config: model config (``hidden_size``, ``num_heads``, ``qk_layernorm``, ``rotary_dim``, ...).
        layer_idx: index of the block (selects the cache slot).
    """

    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        d, self.num_heads, self.head_dim = config.hidden_size, config.num_heads, config.head_dim
        self.layer_idx = layer_idx
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.dense = nn.Linear(d, d)
        self.qk_layernorm = config.qk_layernorm
        if config.qk_layernorm:
            self.q_layernorm = nn.LayerNorm(self.head_dim, eps=config.layer_norm_eps)
            self.k_layernorm = nn.LayerNorm(self.head_dim, eps=config.layer_norm_eps)
        self.rotary = RotaryEmbedding(config.rotary_dim, config.rope_theta)
        self.dropout = config.dropout

    def forward(
        self,
        h: Tensor,
        cos_sin: tuple[Tensor, Tensor],
        attention_mask: Tensor | None,
        cache: KVCache | None,
        use_cache: bool,
    ) -> Tensor:
        """Attend.

        Args:
            h: normed hidden states ``(B, L, D)``.
            cos_sin: RoPE tables ``(B, 1, L, rotary_dim)`` for the L new positions.
            attention_mask: ``(B, 1, L, T + L)`` bool (True = may attend) or additive float, or None (full).
            cache: KV cache holding T earlier positions, or None.
            use_cache: append this forward's keys/values to ``cache``.

        Returns:
            ``(B, L, D)`` attention output (after ``dense``).
        """
        b, n, _ = h.shape
        q = self.q_proj(h).view(b, n, self.num_heads, self.head_dim)  # (B, L, H, hd)
        k = self.k_proj(h).view(b, n, self.num_heads, self.head_dim)
        v = self.v_proj(h).view(b, n, self.num_heads, self.head_dim)
        if self.qk_layernorm:
            q, k = self.q_layernorm(q), self.k_layernorm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, L, hd)
        cos, sin = cos_sin
        q, k = self.rotary.rotate(q, cos, sin), self.rotary.rotate(k, cos, sin)
        if cache is not None:
            if use_cache:
                k, v = cache.append(self.layer_idx, k, v)
            else:
                old_k, old_v = cache.get(self.layer_idx)
                if old_k is not None:
                    k, v = torch.cat((old_k, k), dim=2), torch.cat((old_v, v), dim=2)
        if attention_mask is not None and attention_mask.dtype != torch.bool:
            attention_mask = attention_mask.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attention_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, L, hd)
        out = out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)  # (B, L, D)
        return self.dense(out)
