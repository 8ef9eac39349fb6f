"""Score-entropy invariants: Bregman bracket, decomposition of the absorbing entropy, reverse rate."""

from __future__ import annotations

import torch

from unif2ace.losses import absorbing_score_entropy, dse_bracket, reverse_rate, score_entropy_loss
from unif2ace.losses.masked_ce import token_ce_mean
from unif2ace.losses.score_entropy import ratio_from_sigma


def test_bracket_nonnegative_and_zero_at_target():
    gen = torch.Generator().manual_seed(0)
    s = torch.exp(4 * torch.randn(10000, generator=gen, dtype=torch.float64))
    a = torch.exp(4 * torch.randn(10000, generator=gen, dtype=torch.float64))
    assert torch.all(dse_bracket(s, a) >= 0)
    scale = a * (1 + a.log().abs())  # cancellation error grows with the magnitude of the terms
    assert torch.all(dse_bracket(a, a).abs() <= 1e-14 * scale)
    s0 = a.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(dse_bracket(s0, a).sum(), s0)  # minimum at s = a
    torch.testing.assert_close(grad, torch.zeros_like(a), atol=1e-12, rtol=0)


def test_entropy_is_sum_of_brackets_against_true_ratios():
    """At a masked position the true ratio is r for y = x0 and 0 for other clean y (bracket(s, 0) = s)."""
    gen = torch.Generator().manual_seed(1)
    batch, length, k = 3, 7, 6
    log_s = torch.randn(batch, length, k + 1, generator=gen, dtype=torch.float64)
    x0 = torch.randint(0, k, (batch, length), generator=gen)
    x_t = torch.where(torch.rand(batch, length, generator=gen) < 0.6, k, x0)
    sigma = torch.tensor([0.2, 0.9, 2.5], dtype=torch.float64)
    ent = absorbing_score_entropy(log_s, sigma, x_t, x0, mask_id=k)
    r = ratio_from_sigma(sigma)[:, None, None]
    target = torch.nn.functional.one_hot(x0, k + 1).double() * r  # (B, L, K+1)
    brackets = torch.where(target > 0, dse_bracket(log_s.exp(), target.clamp(min=1e-300)), log_s.exp())
    expected = brackets[..., :k].sum(-1) * (x_t == k)
    torch.testing.assert_close(ent, expected, rtol=1e-12, atol=1e-12)
    assert torch.all(ent >= 0)


def test_entropy_zero_at_true_score():
    x0 = torch.tensor([[2, 0, 1]])
    x_t = torch.tensor([[3, 3, 1]])
    sigma = torch.tensor([0.7])
    r = ratio_from_sigma(sigma)
    log_s = torch.full((1, 3, 4), float("-inf"))
    log_s.scatter_(-1, x0[..., None], r.log().expand(1, 3, 1))
    ent = absorbing_score_entropy(log_s, sigma, x_t, x0, mask_id=3)
    torch.testing.assert_close(ent, torch.zeros(1, 3), atol=1e-6, rtol=0)
    loss = score_entropy_loss(log_s, sigma, torch.tensor([2.0]), x_t, x0, mask_id=3)
    torch.testing.assert_close(loss, torch.zeros(1), atol=1e-6, rtol=0)


def test_reverse_rate_rows_sum_to_zero():
    gen = torch.Generator().manual_seed(2)
    score = torch.rand(2, 5, 9, generator=gen)
    x = torch.randint(0, 8, (2, 5), generator=gen)
    x[:, :2] = 8
    rate = reverse_rate(x, score)
    torch.testing.assert_close(rate.sum(-1), torch.zeros(2, 5), atol=1e-6, rtol=0)
    # unmasked tokens have no outgoing reverse rate (absorbing graph)
    assert torch.all(rate[:, 2:] == 0)


def test_token_ce_all_ignored_is_zero_with_zero_grad():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss = token_ce_mean(logits, torch.full((2, 3), -100))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.all(logits.grad == 0)
