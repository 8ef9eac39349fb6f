"""Attribute-weighted masked CE (train.loss.position_weight_attributes): the weights, the loss, the wiring."""

from __future__ import annotations

import json

import pytest
import torch
from train_helpers import make_dataset, tiny_config

from unif2ace.config.base import ConfigError
from unif2ace.data.dataset import attribute_position_weights
from unif2ace.losses import D3DiffLoss
from unif2ace.model import build_model
from unif2ace.training.losses import LossComputer
from unif2ace.training.run import build_batch_builder


def _records_and_codes(n: int = 400, num_tokens: int = 6, seed: int = 0):
    """Random codes, except that position 4 holds 3 when smiling and 12 otherwise; glasses at position 1."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (n, num_tokens), generator=gen)
    smile = torch.rand(n, generator=gen) < 0.7
    glasses = torch.rand(n, generator=gen) < 0.2
    codes[:, 4] = torch.where(smile, 3, 12)
    codes[glasses, 1] = 15
    records = [
        {"attributes": {"smile": {"value": bool(s)}, "eyeglasses": {"value": bool(g)}, "gender": {"value": "male"}}}
        for s, g in zip(smile.tolist(), glasses.tolist(), strict=True)
    ]
    return records, codes


def test_weights_favour_the_positions_that_carry_the_attribute():
    records, codes = _records_and_codes()
    w = attribute_position_weights(records, codes, ["smile"], strength=1.0)
    assert w.shape == (6,) and w.dtype == torch.float32
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    assert int(w.argmax()) == 4
    others = torch.cat([w[:4], w[5:]])
    assert float(w[4]) > 1.5 and float(others.max()) < 0.6  # (1 + m) / 2 with m ~ 6 at the carrier, ~0 elsewhere
    both = attribute_position_weights(records, codes, ["smile", "eyeglasses"], strength=1.0)
    assert set(both.topk(2).indices.tolist()) == {1, 4}
    # strength 0 is the uniform loss; a larger strength moves further from it
    torch.testing.assert_close(attribute_position_weights(records, codes, ["smile"], 0.0), torch.ones(6))
    strong = attribute_position_weights(records, codes, ["smile"], strength=4.0)
    assert float(strong[4]) > float(w[4]) and float(strong[0]) < float(w[0])


def test_weights_refuse_unusable_attributes():
    records, codes = _records_and_codes(n=50)
    with pytest.raises(ValueError, match="'hat' has 0 value"):
        attribute_position_weights(records, codes, ["hat"], 1.0)
    with pytest.raises(ValueError, match="'gender' has 1 value"):
        attribute_position_weights(records, codes, ["gender"], 1.0)
    with pytest.raises(ValueError, match="one row of codes per record"):
        attribute_position_weights(records[:-1], codes, ["smile"], 1.0)


def test_weighted_masked_ce_is_the_weighted_mean_over_masked_tokens():
    torch.manual_seed(0)
    logits, x0 = torch.randn(3, 5, 8), torch.randint(0, 8, (3, 5))
    mask = torch.rand(3, 5) < 0.6
    mask[0, 2] = True
    ratio = torch.full((3,), 0.6)
    loss = D3DiffLoss(alpha=0.01)
    plain = loss(logits, x0, mask, ratio)
    same = loss(logits, x0, mask, ratio, position_weights=torch.full((5,), 3.0))
    torch.testing.assert_close(same.mask_ce, plain.mask_ce)  # constant weights change nothing
    torch.testing.assert_close(same.score, plain.score)  # the score term stays the unweighted ELBO
    only = loss(logits, x0, mask, ratio, position_weights=torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]))
    nll = -logits.log_softmax(-1).gather(-1, x0[..., None]).squeeze(-1)
    torch.testing.assert_close(only.mask_ce, nll[:, 2][mask[:, 2]].mean())


def test_trainer_batches_use_the_weights_from_the_records(tmp_path):
    records, tokens = make_dataset(tmp_path, num_images=24)
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["attributes"] = {"smile": {"value": i % 3 == 0}}
    records.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tiny_config(records, tokens, **{"train.loss.position_weight_attributes": ["smile"]})
    builder = build_batch_builder(cfg)
    w = builder.position_weights
    assert w is not None and w.shape == (16,)
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    batch = builder.build(0, 0, 2, 2)
    torch.manual_seed(0)
    out = build_model(cfg.model)(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        ctx=batch.routing_context(),
    )
    weighted = LossComputer(cfg, position_weights=w)(out, batch)
    plain = LossComputer(cfg)(out, batch)
    start, size = cfg.model.vocab.image_offset, cfg.model.vocab.codebook_size
    n = batch.num_t2i
    img = torch.stack([out.logits[i, batch.image_positions[i], start : start + size] for i in range(n)])
    nll = -img.log_softmax(-1).gather(-1, batch.image_x0[..., None]).squeeze(-1)
    m = batch.image_masked.float() * w
    torch.testing.assert_close(weighted.t2i_mask_ce, (nll * m).sum() / m.sum(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weighted.mmu, plain.mmu)
    assert not torch.allclose(weighted.t2i_mask_ce, plain.t2i_mask_ce)
    # no builder weights without the option; a negative strength is a config error
    assert build_batch_builder(tiny_config(records, tokens)).position_weights is None
    with pytest.raises(ConfigError, match="position_weight_strength"):
        tiny_config(records, tokens, **{"train.loss.position_weight_strength": -1.0})
