"""D3Diff: explicit score entropy = r-weighted CE identity (spec §4.5), variants, alpha, score-only."""

from __future__ import annotations

import math

import pytest
import torch

from unif2ace.losses import CosineSchedule, D3DiffLoss, LogLinearNoise, MaskingNoise, mask_tokens, masked_token_ce
from unif2ace.losses.d3diff import d3diff_row_noise, weighted_ce_score

B, N, C = 4, 16, 32


def make_batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, C, (B, N), generator=gen)
    masked = mask_tokens(x0, C, CosineSchedule(), generator=gen)
    logits = 2 * torch.randn(B, N, C, generator=gen)
    return logits, x0, masked.mask, masked.mask_prob


def reference_weighted_ce(logits, x0, mask, mask_ratio, noise):
    """sum over masked positions of -r log p * sigma', computed independently in float64."""
    m = mask_ratio.double().clamp(1 / N, 1 - 1e-6)
    r = (1 - m) / m
    dsigma = noise.rate_from_mask_ratio(m)
    nll = -logits.double().log_softmax(-1).gather(-1, x0[..., None]).squeeze(-1)
    return ((dsigma * r)[:, None] * nll * mask).sum(-1)


@pytest.mark.parametrize("noise", [MaskingNoise(CosineSchedule()), LogLinearNoise()], ids=["cosine", "loglinear"])
def test_explicit_equals_weighted_ce_identity(noise):
    logits, x0, mask, mask_ratio = make_batch()
    out = D3DiffLoss(alpha=0.01, noise=noise)(logits, x0, mask, mask_ratio)
    expected = reference_weighted_ce(logits, x0, mask, mask_ratio, noise)
    torch.testing.assert_close(out.score_per_sample.double(), expected, rtol=1e-5, atol=0)
    closed = D3DiffLoss(alpha=0.01, noise=noise, explicit=False)(logits, x0, mask, mask_ratio)
    torch.testing.assert_close(closed.score_per_sample, out.score_per_sample, rtol=1e-5, atol=0)


def test_cosine_weight_formula():
    logits, x0, mask, mask_ratio = make_batch(1)
    out = D3DiffLoss()(logits, x0, mask, mask_ratio)
    m = mask_ratio.double().clamp(1 / N, 1 - 1e-6)
    weight = (math.pi / 2) * torch.sqrt(1 - m**2) / m  # spec §4.5
    nll = -logits.double().log_softmax(-1).gather(-1, x0[..., None]).squeeze(-1)
    torch.testing.assert_close(out.score_per_sample.double(), (weight[:, None] * nll * mask).sum(-1), rtol=1e-5, atol=0)


def test_paper_variant_constant_and_same_gradients():
    logits, x0, mask, mask_ratio = make_batch(2)
    grads, outs = {}, {}
    for variant in ("exact", "paper"):
        leaf = logits.clone().requires_grad_(True)
        outs[variant] = D3DiffLoss(alpha=1.0, variant=variant)(leaf, x0, mask, mask_ratio)
        (grads[variant],) = torch.autograd.grad(outs[variant].score, leaf)
    torch.testing.assert_close(grads["paper"], grads["exact"], atol=1e-5, rtol=1e-4)
    m, sigma, dsigma = d3diff_row_noise(mask_ratio, N, MaskingNoise(), 1 - 1e-6)
    nll = -logits.log_softmax(-1).gather(-1, x0[..., None]).squeeze(-1)
    closed = weighted_ce_score(nll, mask, m, sigma, dsigma, "paper")
    torch.testing.assert_close(outs["paper"].score_per_sample, closed, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(outs["paper"].score, outs["exact"].score)  # differs by a constant


def test_alpha_zero_is_mask_ce():
    logits, x0, mask, mask_ratio = make_batch(3)
    out = D3DiffLoss(alpha=0.0)(logits, x0, mask, mask_ratio)
    labels = torch.where(mask, x0, -100)
    torch.testing.assert_close(out.loss, masked_token_ce(logits, labels))
    assert torch.equal(out.loss, out.mask_ce)
    assert torch.isfinite(out.score)  # still logged


def test_alpha_mix_and_score_only():
    logits, x0, mask, mask_ratio = make_batch(4)
    both = D3DiffLoss(alpha=0.01)(logits, x0, mask, mask_ratio)
    torch.testing.assert_close(both.loss, both.mask_ce + 0.01 * both.score)
    torch.testing.assert_close(both.score, both.score_per_sample.mean())
    only = D3DiffLoss(alpha=0.01, score_only=True)(logits, x0, mask, mask_ratio)
    torch.testing.assert_close(only.loss, 0.01 * only.score)
    leaf = logits.clone().requires_grad_(True)
    D3DiffLoss(alpha=0.01, score_only=True)(leaf, x0, mask, mask_ratio).loss.backward()
    assert torch.all(leaf.grad[~mask] == 0)  # only masked positions carry signal


def test_fully_masked_row_is_finite():
    logits, x0, _, _ = make_batch(5)
    mask = torch.ones(B, N, dtype=torch.bool)
    out = D3DiffLoss()(logits, x0, mask, torch.ones(B))  # m = 1: sigma would be inf without the clamp
    assert torch.isfinite(out.loss) and torch.all(torch.isfinite(out.score_per_sample))
    assert float(out.score_per_sample.max()) < 0.1 * float(out.mask_ce) * N  # weight -> 0 as m -> 1


def test_score_to_mask_ratio_is_about_n():
    """E_tau[m'(tau)] = 1, so E[L_score] ~ N * mean CE (spec §4.5 '200x' remark): check for a constant predictor."""
    gen = torch.Generator().manual_seed(6)
    n, rows = 64, 4096
    x0 = torch.randint(0, C, (rows, n), generator=gen)
    masked = mask_tokens(x0, C, CosineSchedule(), generator=gen)
    logits = torch.zeros(rows, n, C)  # nll = log C everywhere
    out = D3DiffLoss(explicit=False)(logits, x0, masked.mask, masked.mask_prob)
    assert 0.8 * n < float(out.score / out.mask_ce) < 1.2 * n


def test_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        D3DiffLoss(alpha=-1.0)
    with pytest.raises(ValueError, match="variant"):
        D3DiffLoss(variant="radd")
    logits, x0, mask, mask_ratio = make_batch()
    with pytest.raises(ValueError, match="logits"):
        D3DiffLoss()(logits[0], x0, mask, mask_ratio)


def test_from_mode():
    assert D3DiffLoss.from_mode("mask_only", alpha=0.5).alpha == 0.0
    score_only = D3DiffLoss.from_mode("score_only", alpha=0.01, variant="paper", mask_schedule="pow2")
    assert score_only.score_only and score_only.variant == "paper" and score_only.noise.schedule.exponent == 2.0
    assert D3DiffLoss.from_mode() == D3DiffLoss()
    with pytest.raises(ValueError, match="mode"):
        D3DiffLoss.from_mode("both")
