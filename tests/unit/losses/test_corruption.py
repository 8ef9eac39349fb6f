"""Show-o count-based masking and SEDD's absorbing transition."""

from __future__ import annotations

import pytest
import torch

from unif2ace.losses import IGNORE_INDEX, CosineSchedule, LinearSchedule, mask_tokens, sample_transition

MASK = 99


def test_counts_labels_and_ids():
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 64, (64, 32), generator=gen)
    out = mask_tokens(ids, MASK, CosineSchedule(), generator=gen)
    expected = torch.round(32 * torch.cos(out.timesteps * torch.pi / 2)).clamp(min=1)
    assert torch.equal(out.mask.sum(-1).float(), expected)
    torch.testing.assert_close(out.mask_prob, torch.cos(out.timesteps * torch.pi / 2))
    assert torch.all(out.input_ids[out.mask] == MASK)
    assert torch.equal(out.input_ids[~out.mask], ids[~out.mask])
    assert torch.equal(out.labels[out.mask], ids[out.mask])
    assert torch.all(out.labels[~out.mask] == IGNORE_INDEX)


def test_generator_reproducible_and_global_rng_path():
    ids = torch.arange(40).view(4, 10)
    a = mask_tokens(ids, MASK, CosineSchedule(), generator=torch.Generator().manual_seed(7))
    b = mask_tokens(ids, MASK, CosineSchedule(), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.timesteps, b.timesteps)
    torch.manual_seed(11)
    c = mask_tokens(ids, MASK, CosineSchedule())
    torch.manual_seed(11)
    t = torch.rand(4)
    ranks = torch.rand(4, 10).argsort(-1)
    assert torch.equal(c.timesteps, t)
    assert torch.equal(c.mask, ranks < torch.round(10 * torch.cos(t * torch.pi / 2)).clamp(min=1)[:, None])


def test_given_timesteps_and_min_rate():
    ids = torch.zeros(3, 20, dtype=torch.long)
    t = torch.tensor([0.0, 0.5, 1.0])
    out = mask_tokens(ids, MASK, LinearSchedule(), timesteps=t, min_masking_rate=0.2)
    assert torch.equal(out.timesteps, t)
    torch.testing.assert_close(out.mask_prob, torch.tensor([1.0, 0.5, 0.2]))
    assert out.mask.sum(-1).tolist() == [20, 10, 4]
    with pytest.raises(ValueError, match="timesteps"):
        mask_tokens(ids, MASK, LinearSchedule(), timesteps=torch.zeros(2))
    with pytest.raises(ValueError, match="image_ids"):
        mask_tokens(ids[0], MASK, LinearSchedule())


def test_at_least_one_token_masked():
    ids = torch.zeros(5, 8, dtype=torch.long)
    out = mask_tokens(ids, MASK, LinearSchedule(), timesteps=torch.ones(5))  # m = 1e-6 -> round(8e-6) = 0 -> 1
    assert out.mask.sum(-1).tolist() == [1] * 5


def test_sample_transition_rate():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 10, (4, 5000), generator=gen)
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0])[:, None]
    x_t = sample_transition(x0, sigma, 10, generator=gen)
    frac = (x_t == 10).float().mean(-1)
    torch.testing.assert_close(frac, 1 - torch.exp(-sigma[:, 0]), atol=0.02, rtol=0)
    assert torch.equal(x_t[x_t != 10], x0[x_t != 10])
