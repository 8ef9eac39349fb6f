"""Mask schedules, their derivatives / inverses, and the noise processes built on them."""

from __future__ import annotations

import math

import pytest
import torch

from unif2ace.losses import (
    CosineSchedule,
    LinearSchedule,
    LogLinearNoise,
    MaskingNoise,
    MaskSchedule,
    PowSchedule,
    SigmoidSchedule,
    get_mask_schedule,
)

SCHEDULES = [CosineSchedule(), LinearSchedule(), PowSchedule(2.0), PowSchedule(0.5), SigmoidSchedule()]
GRID = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__ + str(getattr(s, "exponent", "")))
def test_derivative_matches_autograd(schedule):
    r = GRID.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(schedule(r).sum(), r)
    torch.testing.assert_close(schedule.derivative(GRID), grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__ + str(getattr(s, "exponent", "")))
def test_inverse_round_trip_and_endpoints(schedule):
    assert isinstance(schedule, MaskSchedule)
    torch.testing.assert_close(schedule.inverse(schedule(GRID)), GRID, rtol=1e-9, atol=1e-9)
    assert float(schedule(torch.tensor(0.0))) == pytest.approx(1.0, abs=1e-6)  # r = 0: everything masked
    values = schedule(GRID)
    assert torch.all(values[1:] <= values[:-1])  # decreasing in progress


def test_get_mask_schedule_names():
    assert get_mask_schedule("pow3") == PowSchedule(3.0)
    assert get_mask_schedule("sigmoid", start=-2.0) == SigmoidSchedule(start=-2.0)
    for bad in ("cosin", "pow", "powx", "pow-1", ""):
        with pytest.raises(ValueError, match="unknown mask schedule"):
            get_mask_schedule(bad)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__ + str(getattr(s, "exponent", "")))
def test_masking_noise_is_consistent(schedule):
    noise = MaskingNoise(schedule)
    tau = GRID.clone().requires_grad_(True)
    sigma = noise.total_noise(tau)
    (dsigma,) = torch.autograd.grad(sigma.sum(), tau)
    torch.testing.assert_close(noise.rate_noise(GRID), dsigma, rtol=1e-8, atol=1e-10)
    m = noise.mask_ratio(GRID)
    torch.testing.assert_close(1 - torch.exp(-noise.total_noise(GRID)), m, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(noise.rate_from_mask_ratio(m), noise.rate_noise(GRID), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(noise.sigma_from_mask_ratio(m), noise.total_noise(GRID), rtol=1e-12, atol=1e-12)


def test_cosine_elbo_weight():
    # spec §4.5: sigma'(tau) * r = (pi/2) sqrt(1 - m^2) / m for m = sin(pi tau / 2)
    noise = MaskingNoise(CosineSchedule())
    m = torch.tensor([1 / 256, 0.1, 0.5, 0.9, 0.999], dtype=torch.float64)
    weight = noise.rate_from_mask_ratio(m) * (1 - m) / m
    torch.testing.assert_close(weight, (math.pi / 2) * torch.sqrt(1 - m**2) / m)
    torch.testing.assert_close(noise.mask_ratio(GRID), torch.sin(math.pi * GRID / 2))


def test_log_linear_noise():
    noise = LogLinearNoise(eps=1e-3)
    t = GRID
    m = noise.mask_ratio(t)
    torch.testing.assert_close(m, (1 - 1e-3) * t)
    torch.testing.assert_close(1 - torch.exp(-noise.total_noise(t)), m)
    torch.testing.assert_close(noise.sigma_from_mask_ratio(m), noise.total_noise(t))
    torch.testing.assert_close(noise.rate_from_mask_ratio(m), noise.rate_noise(t))
    sigma, dsigma = noise(t)
    torch.testing.assert_close(dsigma, noise.rate_noise(t))
    # ELBO weight sigma' * r = 1 / t (spec §4.5)
    torch.testing.assert_close(dsigma * (1 - m) / m, 1 / t)


def test_bad_schedule_parameters():
    with pytest.raises(ValueError, match="exponent"):
        PowSchedule(0.0)
    with pytest.raises(ValueError, match="end > start"):
        SigmoidSchedule(start=1.0, end=-1.0)
