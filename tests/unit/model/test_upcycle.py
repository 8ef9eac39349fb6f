"""Upcycling invariance (spec §3.2 init, §10 test anchor) and the MoEs inside the transformer.

Block level: :func:`upcycle_feed_forward` reproduces the dense MLP (<= 1e-6). Model level: token MoE upcycled from a
dense model + sequence routers forced to Copy reproduce the dense logits (<= 1e-5); forced Zero everywhere skips
every block; gradient checkpointing with both MoEs (noise expert drawing from ``ctx.generator``) gives the same
loss and gradients as without.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unif2ace.config.model import GEN, UND, ModelConfig, ResamplerConfig, SeqMoEConfig, TokenMoEConfig, VocabConfig
from unif2ace.model import build_model
from unif2ace.model.factories import build_sequence_mixers, upcycle_feed_forward
from unif2ace.model.interfaces import RoutingContext
from unif2ace.model.masks import mmu_attention_mask, omni_attention_mask


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many tiny ops: one intra-op thread avoids OpenMP barrier stalls on shared, oversubscribed CI cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


# --- model level -------------------------------------------------------------------------------------------------

NI = 4  # image tokens per row (= resampler queries)


def _model_config(moe: bool, **kw) -> ModelConfig:
    return ModelConfig(
        vocab=VocabConfig(llm_vocab_size=40, codebook_size=16, bos_id=0, eos_id=0),
        hidden_size=32,
        num_layers=3,
        num_heads=4,
        intermediate_size=64,
        token_moe=TokenMoEConfig(
            enabled=moe, num_routed=4, top_k=2, routed_intermediate=16, shared_intermediate=64, balance_coef_gen=0.1
        ),
        seq_moe=SeqMoEConfig(
            enabled=moe,
            feature_dims={"clip": 6, "face": 5},
            noise_dim=7,
            resampler=ResamplerConfig(dim=16, depth=1, heads=2, dim_head=8, num_queries=NI),
        ),
        **kw,
    )


def _mixed_batch(v: VocabConfig, seed: int = 0):
    """Two T2I rows (left-padded, omni mask) and two MMU rows (mmu mask) of one length, with their context."""
    g = torch.Generator().manual_seed(seed)
    soi, eoi, t2i, mmu = (v.special_id(t) for t in ("<|soi|>", "<|eoi|>", "<|t2i|>", "<|mmu|>"))
    img = lambda: (torch.randint(0, v.codebook_size, (NI,), generator=g) + v.image_offset).tolist()  # noqa: E731
    txt = lambda n: torch.randint(1, v.llm_vocab_size, (n,), generator=g).tolist()  # noqa: E731
    gen_rows = [[v.pad_id] * 2 + [t2i, 0, *txt(2), 0, soi, *img(), eoi], [t2i, 0, *txt(4), 0, soi, *img(), eoi]]
    und_rows = [[mmu, soi, *img(), eoi, 0, *txt(5)] for _ in range(2)]
    gen_ids, und_ids = torch.tensor(gen_rows), torch.tensor(und_rows)
    ids = torch.cat([gen_ids, und_ids])  # (4, 13)
    mask = torch.cat([omni_attention_mask(gen_ids, v.pad_id, soi, eoi), mmu_attention_mask(und_ids, eoi, per_row=True)])
    length = ids.shape[1]
    image_mask = torch.zeros(4, length, dtype=torch.bool)
    image_mask[:2, length - 1 - NI : length - 1], image_mask[2:, 2 : 2 + NI] = True, True
    pos = torch.arange(length).expand(4, length)
    pool = torch.cat([pos[:2] < length - 2 - NI, pos[2:] <= 2 + NI]) & (ids != v.pad_id)
    features = {"clip": torch.randn(4, 3, 6, generator=g), "face": torch.randn(4, 1, 5, generator=g)}

    def ctx(**kw) -> RoutingContext:
        return RoutingContext(
            group_ids=torch.tensor([GEN, GEN, UND, UND]),
            valid=ids != v.pad_id,
            image_mask=image_mask,
            pool_mask=pool,
            features=features,
            **kw,
        )

    return ids, mask, ctx


def _perturbed(model):
    with torch.no_grad():  # non-trivial weights (zero-init biases / fc2s would hide mistakes)
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("block_form", ["parallel", "sequential"])
def test_upcycled_model_with_forced_copy_gives_dense_logits(block_form):
    torch.manual_seed(0)
    dense = _perturbed(build_model(_model_config(False, block_form=block_form))).eval()
    cfg = _model_config(True, block_form=block_form)
    moe = build_model(cfg).eval()
    backbone = {k: v for k, v in dense.state_dict().items() if ".mlp." not in k}
    assert set(backbone) <= set(moe.state_dict())
    assert all(".mlp." in k or ".seq_mixer." in k for k in set(moe.state_dict()) - set(backbone))
    moe.load_state_dict(backbone, strict=False)
    for i, block in enumerate(moe.blocks):
        block.mlp = upcycle_feed_forward(dense.blocks[i].mlp, cfg, i)
    ids, mask, ctx = _mixed_batch(cfg.vocab)
    copy_pair = torch.tensor([[0, 3], [0, 3], [2, 3], [2, 3]])  # gen: copy, copy; und: copy, copy
    with torch.no_grad():
        ref = dense(ids, attention_mask=mask).logits
        out = moe(ids, attention_mask=mask, ctx=ctx(force_seq_experts=copy_pair))
    assert (out.logits - ref).abs().max().item() <= 1e-5
    assert out.aux_loss.item() > 0  # the token routers are live
    routed = [r["token"]["token_counts"] for r in out.routing]
    assert all(c.sum().item() == 2 * (ids != cfg.vocab.pad_id).sum().item() for c in routed)  # top-2 x valid tokens


def test_forced_zero_everywhere_skips_every_block():
    torch.manual_seed(0)
    cfg = _model_config(True)
    model = _perturbed(build_model(cfg)).eval()
    ids, mask, ctx = _mixed_batch(cfg.vocab)
    gen_ids = ids[:2]
    zero = torch.tensor([[1], [1]])  # gen experts: copy, zero, noise, copy
    c = ctx()
    c2 = RoutingContext(c.group_ids[:2], c.valid[:2], c.image_mask[:2], c.pool_mask[:2], force_seq_experts=zero)
    with torch.no_grad():
        out = model(gen_ids, attention_mask=mask[:2], ctx=c2).logits
        expected = model.lm_head(model.final_layernorm(model.embed_tokens(gen_ids)))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("forced", [False, True])
def test_gradient_checkpointing_with_moes_same_loss_and_grads(forced):
    torch.manual_seed(0)
    a = _perturbed(build_model(_model_config(True)))
    b = build_model(_model_config(True, gradient_checkpointing=True))
    b.load_state_dict(a.state_dict())
    ids, mask, ctx = _mixed_batch(a.config.vocab)
    feature_experts = torch.tensor([[2, 0], [2, 1], [0, 1], [1, 0]])  # gen: noise + copy / zero; und: clip + face
    results = []
    for model in (a, b):
        model.train()
        c = ctx(generator=torch.Generator().manual_seed(7), force_seq_experts=feature_experts if forced else None)
        torch.manual_seed(1)  # same global RNG state for both runs
        out = model(ids, attention_mask=mask, ctx=c)
        loss = out.logits.logsumexp(-1).mean() + out.aux_loss
        loss.backward()
        results.append((loss.detach(), c.features.get("noise")))
    torch.testing.assert_close(results[0][0], results[1][0])
    if forced:
        torch.testing.assert_close(results[0][1], results[1][1])
        assert a.blocks[1].seq_mixer.experts["gen"][2].gate.weight.grad.abs().sum() > 0
        assert a.blocks[0].seq_mixer.resamplers["noise"].proj_in.weight.grad.abs().sum() > 0
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        if pa.grad is None:
            assert pb.grad is None, n
        else:
            torch.testing.assert_close(pa.grad, pb.grad, atol=1e-6, rtol=1e-5, msg=n)
