"""Total loss: weighted sum with each term kept for logging."""

from __future__ import annotations

import pytest
import torch

from unif2ace.losses import D3DiffOutput, LossWeights, combine_losses


def d3(loss=2.0, ce=1.5, score=50.0):
    return D3DiffOutput(torch.tensor(loss), torch.tensor(ce), torch.tensor(score), torch.tensor([score]))


def test_weighted_sum_and_terms():
    bal = {"token_und": torch.tensor(0.02), "token_gen": torch.tensor(0.03)}
    out = combine_losses(
        LossWeights(t2i=1.0, mmu=0.5, lm=0.1), t2i=d3(), mmu=torch.tensor(4.0), lm=torch.tensor(3.0), balance=bal
    )
    torch.testing.assert_close(out.total, torch.tensor(2.0 + 2.0 + 0.3 + 0.05))
    assert float(out.t2i_mask_ce) == 1.5 and float(out.t2i_score) == 50.0
    logs = out.to_log_dict()
    assert logs["loss/total"] == pytest.approx(4.35)
    assert set(logs) == {
        "loss/total",
        "loss/t2i",
        "loss/t2i_mask_ce",
        "loss/t2i_score",
        "loss/mmu",
        "loss/lm",
        "loss/balance/token_und",
        "loss/balance/token_gen",
    }


def test_missing_terms_and_zero_weights():
    out = combine_losses(LossWeights(lm=0.0), mmu=torch.tensor(4.0), lm=torch.tensor(100.0))
    assert float(out.total) == 4.0 and out.t2i is None and float(out.lm) == 100.0  # lm logged, not added
    assert "loss/t2i" not in out.to_log_dict()
    with pytest.raises(ValueError, match="no term"):
        combine_losses(LossWeights())
    with pytest.raises(ValueError, match="mmu"):
        LossWeights(mmu=-1.0)


def test_gradients_flow_to_each_term():
    a = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(2.0, requires_grad=True)
    out = combine_losses(LossWeights(mmu=2.0, balance=3.0), mmu=a * 1, balance={"x": b * 1})
    out.total.backward()
    assert float(a.grad) == 2.0 and float(b.grad) == 3.0
