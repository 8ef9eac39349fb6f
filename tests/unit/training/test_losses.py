"""The micro-batch objective: logits only where read == full logits; terms match the losses package."""

from __future__ import annotations

import torch
from train_helpers import make_dataset, tiny_config

from unif2ace.losses import D3DiffLoss, next_token_ce
from unif2ace.model import build_model
from unif2ace.training.losses import LossComputer
from unif2ace.training.run import build_batch_builder


def test_masked_logits_give_the_full_logits_loss(tmp_path):
    records, tokens = make_dataset(tmp_path)
    cfg = tiny_config(
        records,
        tokens,
        **{
            "model.token_moe": {
                "enabled": True,
                "num_routed": 4,
                "top_k": 2,
                "routed_intermediate": 16,
                "shared_intermediate": 32,
            }
        },
    )
    batch = build_batch_builder(cfg).build(2, 5, 3, 3)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    common = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
    full = model(**common, ctx=batch.routing_context())
    part = model(**common, ctx=batch.routing_context(), logits_positions=batch.logit_mask)
    assert part.logits.shape == (int(batch.logit_mask.sum()), cfg.model.vocab.vocab_size)
    computer = LossComputer(cfg)
    a, b = computer(full, batch), computer(part, batch)
    for key in ("total", "t2i", "t2i_mask_ce", "t2i_score", "mmu"):
        torch.testing.assert_close(getattr(b, key), getattr(a, key), rtol=1e-5, atol=1e-6)
    assert "moe" in a.balance  # the token MoE's balance term is part of the objective
    torch.testing.assert_close(a.total, a.t2i + a.mmu + a.balance["moe"], rtol=1e-6, atol=1e-6)

    # the terms are the losses package's: shifted CE on MMU rows, D3Diff on the T2I image slice
    n = batch.num_t2i
    torch.testing.assert_close(a.mmu, next_token_ce(full.logits[n:], batch.labels[n:]), rtol=1e-6, atol=1e-6)
    start, size = cfg.model.vocab.image_offset, cfg.model.vocab.codebook_size
    img = torch.stack([full.logits[i, batch.image_positions[i], start : start + size] for i in range(n)])
    ref = D3DiffLoss.from_mode("d3diff", alpha=cfg.train.loss.alpha)(
        img, batch.image_x0, batch.image_masked, batch.mask_prob
    )
    torch.testing.assert_close(a.t2i, ref.loss, rtol=1e-5, atol=1e-6)
