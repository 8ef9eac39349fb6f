"""Ancestral absorbing-diffusion sampler: completion, seeding, CFG, known tokens, SEDD analytic equivalence."""

from __future__ import annotations

import pytest
import torch
from sampling_mocks import CondOnly, MockImageModel

from unif2ace.losses import get_mask_schedule, staggered_score, transp_transition
from unif2ace.losses.score_entropy import ratio_from_sigma
from unif2ace.sampling import ancestral_sample, unmask_probabilities

N, C, B, STEPS = 24, 20, 3, 8


def run(model=None, **kwargs):
    return ancestral_sample(model or MockImageModel(N, C), N, B, C, kwargs.pop("steps", STEPS), **kwargs)


def test_completes_and_repeats():
    a = run(generator=7, guidance_scale=2.0)
    assert a.shape == (B, N) and a.min() >= 0 and a.max() < C
    assert torch.equal(a, run(generator=7, guidance_scale=2.0))
    assert not torch.equal(a, run(generator=8, guidance_scale=2.0))


def test_single_step_and_argmax():
    model = MockImageModel(N, C)
    out = run(model, steps=1, temperature=0.0, generator=0)
    assert torch.equal(out, model(torch.full((B, N), C), True).argmax(-1))


def test_cfg_zero_no_uncond_call_and_known_tokens():
    model = CondOnly(N, C)
    known = torch.randint(0, C, (B, N))
    unknown = torch.rand(B, N) < 0.4
    known[unknown] = C
    seen = []
    out = run(model, generator=1, known_tokens=known, callback=lambda k, t, ids: seen.append((k, t, ids.clone())))
    assert all(model.calls)
    assert torch.equal(out[~unknown], known[~unknown])
    assert [(k, t) for k, t, _ in seen] == [(k, STEPS) for k in range(STEPS)]
    for _, _, ids in seen:
        assert torch.equal(ids[~unknown], known[~unknown])
    assert not (seen[-1][2] == C).any()


@pytest.mark.parametrize("name", ["cosine", "linear", "pow2"])
def test_unmask_probabilities_follow_schedule(name):
    schedule = get_mask_schedule(name)
    probs = torch.tensor(unmask_probabilities(schedule, STEPS), dtype=torch.float64)
    still_masked = torch.cumprod(1 - probs, 0)  # P(masked after step k)
    grid = schedule(torch.arange(1, STEPS + 1, dtype=torch.float64) / STEPS)
    torch.testing.assert_close(still_masked[:-1], grid[:-1], rtol=1e-9, atol=1e-9)
    assert float(still_masked[-1]) == 0.0 and float(probs[-1]) == 1.0


def test_masked_fraction_statistics():
    n, rows, steps = 256, 32, 4
    fractions = []
    model = MockImageModel(n, C)
    ancestral_sample(
        model,
        n,
        rows,
        C,
        steps,
        generator=0,
        callback=lambda k, t, ids: fractions.append(float((ids == C).float().mean())),
    )
    expected = get_mask_schedule("cosine")(torch.arange(1, steps + 1) / steps).tolist()
    for got, want in zip(fractions[:-1], expected[:-1], strict=True):
        assert abs(got - want) < 0.03
    assert fractions[-1] == 0.0


def test_matches_sedd_analytic_update():
    """SEDD's analytic predictor with score r * p_theta gives the MDLM unmask probability (m(t) - m(s)) / m(t)."""
    gen = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(2, 5, C, generator=gen), -1)  # (B, L, C) denoiser
    m_t, m_s = torch.tensor([0.9, 0.4]), torch.tensor([0.6, 0.1])
    sigma_t, sigma_s = -torch.log1p(-m_t), -torch.log1p(-m_s)
    dsigma = (sigma_t - sigma_s)[:, None]  # (B, 1)
    r = ratio_from_sigma(sigma_t)[:, None, None]
    score = torch.cat([r * p, torch.ones(2, 5, 1)], dim=-1)  # score of the current (mask) token is 1
    x = torch.full((2, 5), C)
    probs = staggered_score(score, dsigma) * transp_transition(x, dsigma, C + 1)
    probs = probs / probs.sum(-1, keepdim=True)
    unmask = ((m_t - m_s) / m_t)[:, None, None]
    torch.testing.assert_close(probs[..., :C], unmask * p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probs[..., C], (1 - unmask[..., 0]).expand(2, 5), rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        run(steps=0)
    with pytest.raises(ValueError, match="guidance_scale"):
        run(guidance_scale=-0.5)
    with pytest.raises(ValueError, match="seed"):
        run(generator=-1)
    with pytest.raises(ValueError, match="temperature"):
        run(temperature=-1.0)
