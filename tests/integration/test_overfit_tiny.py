"""A tiny MoE model overfits a fixed mixed T2I + MMU batch on CPU; every routed expert gets gradient."""

from __future__ import annotations

import torch

from unif2ace.config.model import GEN, UND, VocabConfig
from unif2ace.losses.corruption import mask_tokens
from unif2ace.losses.d3diff import D3DiffLoss
from unif2ace.losses.schedules import CosineSchedule
from unif2ace.losses.text import next_token_ce
from unif2ace.model import RoutingContext, build_model
from unif2ace.model.masks import mmu_attention_mask, omni_attention_mask
from unif2ace.training.selftest import N_IMG as N
from unif2ace.training.selftest import toy_config

TEXT = 8  # text budget


def _batch(v: VocabConfig, g: torch.Generator):
    soi, eoi, t2i, mmu = (v.special_id(t) for t in ("<|soi|>", "<|eoi|>", "<|t2i|>", "<|mmu|>"))
    codes = torch.randint(0, v.codebook_size, (4, N), generator=g)
    masked = mask_tokens(codes + v.image_offset, v.mask_id, CosineSchedule(), generator=g)
    rows_t2i = []
    for i in range(2):
        text = torch.randint(1, v.llm_vocab_size, (3 + i,), generator=g).tolist()
        block = [t2i, v.bos_id, *text, v.eos_id]
        rows_t2i.append([v.pad_id] * (TEXT + 1 - len(block)) + block + [soi, *masked.input_ids[i].tolist(), eoi])
    rows_mmu, labels_mmu = [], []
    for i in range(2, 4):
        answer = torch.randint(1, v.llm_vocab_size, (6,), generator=g).tolist() + [v.eos_id]
        head = [mmu, soi, *(codes[i] + v.image_offset).tolist(), eoi, v.bos_id]
        row = head + answer
        rows_mmu.append(row)
        labels_mmu.append([-100] * len(head) + answer)
    ids_t2i, ids_mmu = torch.tensor(rows_t2i), torch.tensor(rows_mmu)
    return codes, masked, ids_t2i, ids_mmu, torch.tensor(labels_mmu)


def test_tiny_model_overfits_mixed_batch_and_experts_get_gradient():
    torch.manual_seed(0)
    cfg = toy_config()
    v = cfg.vocab
    model = build_model(cfg)
    assert model.num_parameters() <= 5_000_000
    g = torch.Generator().manual_seed(0)
    codes, masked, ids_t2i, ids_mmu, labels_mmu = _batch(v, g)
    soi, eoi = v.special_id("<|soi|>"), v.special_id("<|eoi|>")
    feats = {"clip": torch.randn(2, 1, 16, generator=g), "face": torch.randn(2, 1, 16, generator=g)}
    lt = ids_t2i.shape[1]
    img_t2i = torch.zeros_like(ids_t2i, dtype=torch.bool)
    img_t2i[:, TEXT + 2 : TEXT + 2 + N] = True
    img_mmu = torch.zeros_like(ids_mmu, dtype=torch.bool)
    img_mmu[:, 2 : 2 + N] = True
    ctx_t2i = lambda: RoutingContext(  # noqa: E731 - a fresh context per step (routing is recomputed)
        group_ids=torch.full((2,), GEN),
        valid=ids_t2i != v.pad_id,
        image_mask=img_t2i,
        pool_mask=(ids_t2i != v.pad_id) & (torch.arange(lt) <= TEXT),
        generator=torch.Generator().manual_seed(1),
    )
    ctx_mmu = lambda: RoutingContext(  # noqa: E731
        group_ids=torch.full((2,), UND),
        valid=ids_mmu != v.pad_id,
        image_mask=img_mmu,
        pool_mask=torch.arange(ids_mmu.shape[1]).expand_as(ids_mmu) <= N + 2,
        features=feats,
    )
    mask_t2i = omni_attention_mask(ids_t2i, v.pad_id, soi, eoi)
    mask_mmu = mmu_attention_mask(ids_mmu, eoi, per_row=True)
    d3diff = D3DiffLoss(alpha=0.01)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    image_pos = torch.arange(TEXT + 2, TEXT + 2 + N).expand(2, N)
    losses = []
    for step in range(300):
        out_g = model(
            ids_t2i,
            attention_mask=mask_t2i,
            ctx=ctx_t2i(),
            logits_positions=image_pos,
            vocab_range=(v.image_offset, v.image_offset + v.codebook_size),
        )
        gen = d3diff(out_g.logits, codes[:2], masked.mask[:2], masked.mask_prob[:2])
        out_u = model(ids_mmu, attention_mask=mask_mmu, ctx=ctx_mmu())
        und = next_token_ce(out_u.logits, labels_mmu)
        loss = gen.loss + und + out_g.aux_loss + out_u.aux_loss
        opt.zero_grad()
        loss.backward()
        if step == 0:
            _assert_routed_experts_have_gradient(model, out_g.routing, out_u.routing)
        opt.step()
        losses.append(float((gen.loss + und).detach()))
        if losses[-1] <= 0.1 * losses[0]:
            break
    print(f"overfit: {losses[0]:.3f} -> {losses[-1]:.3f} in {step + 1} steps")
    assert losses[-1] <= 0.1 * losses[0], f"loss fell only from {losses[0]:.3f} to {losses[-1]:.3f} in {step + 1} steps"


def _assert_routed_experts_have_gradient(model, routing_gen, routing_und):
    checked = 0
    for layer, block in enumerate(model.blocks):
        counts = routing_gen[layer]["token"]["token_counts"] + routing_und[layer]["token"]["token_counts"]
        for gi, group in enumerate(("und", "gen")):
            for e, expert in enumerate(block.mlp.experts[group]):
                grads = [p.grad for p in expert.parameters()]
                if counts[gi, e] > 0:
                    assert all(gr is not None and gr.abs().sum() > 0 for gr in grads), f"layer {layer} {group}/{e}"
                    checked += 1
    assert checked > 0
