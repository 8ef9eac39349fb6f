"""Upcycling invariance (spec §3.2 init, §10 test anchor): a dense MLP -> grouped token MoE computes the same thing.

Block level: :func:`upcycle_feed_forward` reproduces the dense MLP (<= 1e-6). Model level (needs the transformer):
token MoE upcycled from a dense model + sequence routers forced to Copy reproduce the dense logits (<= 1e-5).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unif2ace.config.model import ModelConfig, TokenMoEConfig
from unif2ace.model.factories import build_sequence_mixers, upcycle_feed_forward
from unif2ace.model.interfaces import RoutingContext


class _PhiMLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.fc2(0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h.pow(3)))))


def _config(**moe_kw) -> ModelConfig:
    moe = dict(enabled=True, num_routed=4, num_shared=1, top_k=2, routed_intermediate=32, shared_intermediate=256)
    moe.update(moe_kw)
    return ModelConfig(
        hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256, token_moe=TokenMoEConfig(**moe)
    )


@pytest.mark.parametrize("moe_kw", [{}, dict(num_shared=2, shared_intermediate=128, renormalize=True)])
@pytest.mark.parametrize("dtype,weight_std,tol", [(torch.float32, None, 1e-6), (torch.float64, 0.1, 1e-12)])
def test_upcycled_block_equals_dense_mlp(moe_kw, dtype, weight_std, tol):
    """fp32 with the default init: <= 1e-6; fp64 with Phi-like weights: exact up to fp64 rounding.

    (The MoE runs its shared expert on gathered ``(T, D)`` tokens, so fp32 GEMM blocking may round differently
    from the dense ``(B, L, D)`` call; fp64 shows the construction itself is exact.)
    """
    config = _config(**moe_kw)
    dense = _PhiMLP(64, 256).to(dtype)
    if weight_std is not None:
        with torch.no_grad():  # larger weights so activations exercise gelu's non-linear range
            for p in dense.parameters():
                p.normal_(std=weight_std)
    moe = upcycle_feed_forward(dense, config, layer_idx=1)
    x = torch.randn(3, 10, 64, dtype=dtype)
    valid = torch.ones(3, 10, dtype=torch.bool)
    valid[1, 7:] = False
    out = moe(x, RoutingContext(group_ids=torch.tensor([0, 1, 0]), valid=valid))
    assert out.hidden.dtype == dtype
    assert (out.hidden - dense(x)).abs().max().item() <= tol
    assert out.aux_loss.item() > 0  # routers are live (balance loss) although routed outputs are 0 at step 0


def test_upcycled_parallel_block_with_forced_copy_mixer_equals_dense_block():
    """``x + MLP(LN x)`` then the sequence mixer with Copy forced equals the dense parallel block."""
    config = _config()
    config.seq_moe.enabled = True
    dense, norm = _PhiMLP(64, 256), nn.LayerNorm(64)
    moe = upcycle_feed_forward(dense, config, layer_idx=0)
    mixer = build_sequence_mixers(config)[0]
    x = torch.randn(2, 12, 64)
    ctx = RoutingContext(
        group_ids=torch.tensor([0, 1]),
        valid=torch.ones(2, 12, dtype=torch.bool),
        force_seq_experts=torch.tensor([[2, 3], [0, 3]]),  # und: copy, copy; gen: copy, copy
    )
    block = x + moe(norm(x), ctx).hidden
    out = mixer(block, ctx, 0, x).hidden
    assert (out - (x + dense(norm(x)))).abs().max().item() <= 1e-6


def test_upcycle_errors():
    config = _config()
    with pytest.raises(ValueError, match="layer_idx 2"):
        upcycle_feed_forward(_PhiMLP(64, 256), config, layer_idx=2)
    with pytest.raises(ValueError, match="hidden_size=64"):
        upcycle_feed_forward(_PhiMLP(32, 256), config, layer_idx=0)
    with pytest.raises(ValueError, match="token_moe.shared_intermediate"):
        upcycle_feed_forward(_PhiMLP(64, 256), _config(shared_intermediate=128), layer_idx=0)
