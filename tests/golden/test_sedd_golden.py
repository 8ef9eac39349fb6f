"""SEDD absorbing graph / log-linear noise / score entropy against upstream tensors (fixtures sedd.*)."""

from __future__ import annotations

import pytest
import torch

from unif2ace.losses import (
    LogLinearNoise,
    absorbing_score_entropy,
    reverse_rate,
    sample_transition,
    score_entropy_loss,
    staggered_score,
    transp_transition,
)
from unif2ace.utils.io import load_tensors, read_json

pytestmark = pytest.mark.golden

MASK = 32  # graph_lib.Absorbing(32): dim 33, absorbing id = last


@pytest.fixture(scope="module")
def sedd(fixtures_dir):
    return load_tensors(fixtures_dir / "sedd.safetensors"), read_json(fixtures_dir / "sedd.json")


def close(actual, expected, rtol):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=0.0)


def test_log_linear_noise(sedd):
    t, _ = sedd
    noise = LogLinearNoise(eps=1e-3)
    sigma, dsigma = noise(t["t"])
    close(sigma, t["sigma"], 1e-6)
    close(dsigma, t["dsigma"], 1e-6)
    close(noise.total_noise(t["t"]), t["total_noise"], 1e-6)
    close(noise.rate_noise(t["t"]), t["rate_noise"], 1e-6)
    rng_sigma, rng_dsigma = noise(t["rng.t"])
    close(rng_sigma, t["rng.sigma"], 1e-6)
    close(rng_dsigma, t["rng.dsigma"], 1e-6)


def test_sample_transition_given_uniforms(sedd):
    t, meta = sedd
    x_t = sample_transition(t["x0"], t["sigma"][:, None], MASK, uniforms=t["sample_transition_uniforms"])
    assert torch.equal(x_t, t["x_t"])
    assert [float(v) for v in (x_t == MASK).float().mean(-1)] == meta["masked_fraction_per_row"]


def test_sample_transition_global_rng(sedd):
    t, meta = sedd
    torch.manual_seed(meta["sample_transition_seed"])
    assert torch.equal(sample_transition(t["x0"], t["sigma"][:, None], MASK), t["x_t"])


def test_rng_path_reproduces_t_and_x_t(sedd):
    # losses.get_loss_fn with t=None: t = (1 - eps) * rand(B) + eps, then sample_transition's rand(B, L)
    t, meta = sedd
    torch.manual_seed(meta["rng_path_seed"])
    drawn = (1 - 1e-3) * torch.rand(t["x0"].shape[0]) + 1e-3
    assert torch.equal(drawn, t["rng.t"])
    sigma, _ = LogLinearNoise()(drawn)
    assert torch.equal(sample_transition(t["x0"], sigma[:, None], MASK), t["rng.x_t"])


def test_score_entropy(sedd):
    t, meta = sedd
    ent = absorbing_score_entropy(t["log_score"], t["sigma"][:, None], t["x_t"], t["x0"], MASK)
    close(ent, t["score_entropy"], 1e-5)
    assert torch.all(ent[t["x_t"] != MASK] == 0)
    loss = score_entropy_loss(t["log_score"], t["sigma"], t["dsigma"], t["x_t"], t["x0"], MASK)
    close(loss, t["loss_per_sample"], 1e-5)
    assert loss.tolist() == pytest.approx(meta["loss_per_sample"], rel=1e-5)


def test_score_entropy_rng_path(sedd):
    t, meta = sedd
    ent = absorbing_score_entropy(t["log_score"], t["rng.sigma"], t["rng.x_t"], t["x0"], MASK)
    close(ent, t["rng.score_entropy"], 1e-5)
    loss = score_entropy_loss(t["log_score"], t["rng.sigma"], t["rng.dsigma"], t["rng.x_t"], t["x0"], MASK)
    close(loss, t["rng.loss_per_sample"], 1e-5)
    assert loss.tolist() == pytest.approx(meta["rng_loss_per_sample"], rel=1e-5)


def test_score_entropy_without_absorbing_column(sedd):
    # mask_id >= K: a log-score over the clean tokens only gives the same entropy
    t, _ = sedd
    ent = absorbing_score_entropy(t["log_score"][..., :MASK], t["sigma"], t["x_t"], t["x0"], MASK)
    close(ent, t["score_entropy"], 1e-5)


def test_staggered_score(sedd):
    t, _ = sedd
    close(staggered_score(t["staggered.score_in"], t["staggered.step_dsigma"]), t["staggered.out"], 1e-5)


def test_transp_transition(sedd):
    t, _ = sedd
    out = transp_transition(t["x_t"], t["sigma"][:, None], MASK + 1)
    close(out, t["transp_transition.out"], 1e-6)


def test_reverse_rate(sedd):
    t, _ = sedd
    close(reverse_rate(t["x_t"], t["staggered.score_in"]), t["reverse_rate.out"], 1e-5)
