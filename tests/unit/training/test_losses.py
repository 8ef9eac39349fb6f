"""The micro-batch objective: logits only where read == full logits; terms match the losses package."""

from __future__ import annotations

import torch
from train_helpers import PADDED_ROWS, TOKEN_MOE, make_dataset, tiny_config

from unif2ace.losses import D3DiffLoss, next_token_ce
from unif2ace.model import build_model
from unif2ace.training.losses import LossComputer
from unif2ace.training.run import build_batch_builder


def test_masked_logits_give_the_full_logits_loss(tmp_path):
    records, tokens = make_dataset(tmp_path)
    cfg = tiny_config(
        records,
        tokens,
        **{"model.token_moe": TOKEN_MOE},
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


def test_trimmed_padding_gives_the_same_losses_and_gradients(tmp_path):
    """data.trim_padding right-aligns MMU rows and drops shared pad columns: same objective on fewer columns."""
    records, tokens = make_dataset(tmp_path)
    results = {}
    for trim in (False, True):
        cfg = tiny_config(
            records,
            tokens,
            **{
                **PADDED_ROWS,
                "data.trim_padding": trim,
                "data.t2i_per_batch": 3,
                "data.mmu_per_batch": 3,
                "model.token_moe": TOKEN_MOE,
                "model.seq_moe": {
                    "enabled": True,
                    "feature_dims": {"clip": 8, "face": 8},
                    "noise_dim": 8,
                    "resampler": {"dim": 16, "depth": 1, "heads": 2, "dim_head": 8, "num_queries": 16},
                },
            },
        )
        batch = build_batch_builder(cfg).build(2, 5, 3, 3)
        torch.manual_seed(0)
        model = build_model(cfg.model)
        out = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            ctx=batch.routing_context(torch.Generator().manual_seed(1)),
            logits_positions=batch.logit_mask,
        )
        losses = LossComputer(cfg)(out, batch)
        losses.total.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        # each row's real tokens with their positions, in order
        real = [
            list(zip(i[v].tolist(), p[v].tolist(), strict=True))
            for i, p, v in zip(batch.input_ids, batch.position_ids, batch.valid, strict=True)
        ]
        results[trim] = batch, losses, grads, real
    (full, a, ga, real_a), (short, b, gb, real_b) = results[False], results[True]
    assert short.input_ids.shape[1] == int(full.valid.sum(1).max()) < full.input_ids.shape[1]
    assert real_b == real_a  # same tokens at the same positions
    assert short.valid[:, -1].all()  # every row ends at the last column
    for key in ("total", "t2i", "t2i_mask_ce", "t2i_score", "mmu"):
        torch.testing.assert_close(getattr(b, key), getattr(a, key), rtol=1e-5, atol=1e-6)
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=1e-4, atol=1e-6, msg=name)
