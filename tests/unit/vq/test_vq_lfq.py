"""LFQ quantiser: code <-> bits bijection, sign convention, entropy-penalty limits, straight-through gradients."""

from __future__ import annotations

import math

import pytest
import torch

from unif2ace.tokenizer.vq.config import LFQConfig
from unif2ace.tokenizer.vq.lfq import LFQuantizer, bits_to_codes, codes_to_bits


@pytest.mark.parametrize("d", [1, 3, 6, 10])
def test_codes_bits_bijection_over_the_whole_codebook(d):
    codes = torch.arange(2**d)
    bits = codes_to_bits(codes, d)
    assert bits.shape == (2**d, d) and set(bits.unique().tolist()) <= {0, 1}
    assert torch.equal(bits_to_codes(bits), codes)
    assert len({tuple(b) for b in bits.tolist()}) == 2**d  # injective, hence bijective on a finite set


def test_msb_first_and_buffers():
    q = LFQuantizer(LFQConfig(codebook_dim=4))
    assert codes_to_bits(torch.tensor(8), 4).tolist() == [1, 0, 0, 0]
    assert q.power_vals.tolist() == [8, 4, 2, 1] and q.power_vals.dtype == torch.int64
    assert q.embedding.shape == (16, 4) and q.embedding.dtype == torch.float32
    assert torch.equal(q.embedding, codes_to_bits(torch.arange(16), 4).float() * 2 - 1)
    assert sorted(q.state_dict()) == ["embedding", "power_vals"]


def test_out_of_range_codes_are_refused():
    with pytest.raises(ValueError, match="must lie in"):
        codes_to_bits(torch.tensor([16]), 4)
    q = LFQuantizer(LFQConfig(codebook_dim=4))
    with pytest.raises(ValueError, match="must lie in"):
        q.get_codebook_entry(torch.tensor([[0, 1, 2, 16]]))


def test_quantise_sign_convention_and_codes():
    q = LFQuantizer(LFQConfig(codebook_dim=3))
    z = torch.tensor([0.5, 0.0, -2.0]).view(1, 3, 1, 1)  # exact zero -> -1 -> bit 0
    out = q(z)
    assert out.z.flatten().tolist() == [1.0, -1.0, -1.0]
    assert out.codes.item() == 4
    assert torch.equal(q.get_codebook_entry(out.codes.view(1, 1)), out.z)


def test_codebook_entry_square_grid_row_major():
    q = LFQuantizer(LFQConfig(codebook_dim=5))
    z = torch.randn(2, 5, 3, 3)
    codes = q.codes_from_latents(z)  # (2, 3, 3)
    entry = q.get_codebook_entry(codes.reshape(2, -1))  # square grid inferred
    assert torch.equal(entry, torch.where(z > 0, 1.0, -1.0))
    assert torch.equal(q.get_codebook_entry(codes.reshape(2, -1)[:, :6], shape=(2, 3)), entry[:, :, :2, :])
    with pytest.raises(ValueError, match="square"):
        q.get_codebook_entry(codes.reshape(2, -1)[:, :6])


def test_commitment_loss_formula():
    cfg = LFQConfig(codebook_dim=4, beta=0.25, commit_loss_multiplier=0.1)
    z = torch.randn(3, 4, 2, 2)
    out = LFQuantizer(cfg)(z)
    expected = 0.1 * 1.25 * ((torch.where(z > 0, 1.0, -1.0) - z) ** 2).mean()
    torch.testing.assert_close(out.quantizer_loss, expected)


def test_entropy_penalty_limits():
    q = LFQuantizer(LFQConfig(codebook_dim=4, entropy_multiplier=0.1))
    ln2 = math.log(2.0)
    # confident and balanced over the batch: per-sample entropy -> 0, codebook entropy -> ln 2 -> minimum -0.1 ln 2
    signs = torch.tensor([1.0, -1.0]).repeat(8)[:, None, None, None].expand(16, 4, 1, 1)
    out = q(signs * 20.0)
    assert out.entropy_loss.item() == pytest.approx(-0.1 * ln2, abs=1e-6)
    # collapse onto one code: both terms -> 0
    assert q(torch.full((16, 4, 1, 1), 20.0)).entropy_loss.item() == pytest.approx(0.0, abs=1e-6)
    # undecided (z = 0): per-sample = codebook = ln 2
    out = q(torch.zeros(4, 4, 2, 2))
    assert out.per_sample_entropy.item() == pytest.approx(ln2) and out.entropy_loss.item() == pytest.approx(0.0)
    # any input: -0.1 ln2 <= loss <= 0.1 ln2 and the codebook term never exceeds ln 2
    out = q(torch.randn(8, 4, 3, 3) * 3)
    assert -0.1 * ln2 - 1e-6 <= out.entropy_loss.item() <= 0.1 * ln2 + 1e-6
    assert 0 <= out.codebook_entropy.item() <= ln2 + 1e-6


def test_straight_through_gradient_and_fp32_under_autocast():
    q = LFQuantizer(LFQConfig(codebook_dim=4, commit_loss_multiplier=0.0, entropy_multiplier=0.0))
    z = torch.randn(2, 4, 2, 2, requires_grad=True)
    out = q(z)
    (out.z * torch.arange(4.0).view(1, 4, 1, 1)).sum().backward()
    assert torch.equal(z.grad, torch.arange(4.0).view(1, 4, 1, 1).expand_as(z))  # identity gradient
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(torch.randn(2, 4, 2, 2).bfloat16())
    assert out.z.dtype == torch.float32 and out.entropy_loss.dtype == torch.float32


def test_entropy_gradient_spreads_usage():
    """One SGD step on the entropy penalty alone makes a collapsed batch more balanced (codebook term rises)."""
    q = LFQuantizer(LFQConfig(codebook_dim=2, entropy_multiplier=1.0, commit_loss_multiplier=0.0))
    z = (torch.full((32, 2, 1, 1), 0.3) + 0.05 * torch.randn(32, 2, 1, 1)).requires_grad_()
    before = q(z)
    before.entropy_loss.backward()
    after = q((z - 5.0 * z.grad).detach())
    assert after.codebook_entropy > before.codebook_entropy


def test_joint_codebook_entropy_sees_correlated_bits():
    """Bits that always agree use 2 of 4 codes: ``joint`` gives ln2 / 2 per bit, ``bitwise`` still ln 2."""
    ln2 = math.log(2.0)
    signs = torch.tensor([1.0, -1.0]).repeat(8)[:, None, None, None].expand(16, 2, 1, 1) * 20.0  # bits equal
    bitwise = LFQuantizer(LFQConfig(codebook_dim=2))(signs)
    joint = LFQuantizer(LFQConfig(codebook_dim=2, codebook_entropy="joint"))(signs)
    assert bitwise.codebook_entropy.item() == pytest.approx(ln2, abs=1e-6)
    assert joint.codebook_entropy.item() == pytest.approx(ln2 / 2, abs=1e-6)
    assert joint.per_sample_entropy.item() == pytest.approx(bitwise.per_sample_entropy.item())
    # independent, balanced bits: all four codes equally likely -> both forms give ln 2 per bit
    grid = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]).repeat(4, 1)[:, :, None, None] * 20.0
    out = LFQuantizer(LFQConfig(codebook_dim=2, codebook_entropy="joint"))(grid)
    assert out.codebook_entropy.item() == pytest.approx(ln2, abs=1e-6)
    # soft assignments: joint = brute-force entropy of the averaged product distribution / d
    z = torch.randn(5, 3, 2, 2)
    out = LFQuantizer(LFQConfig(codebook_dim=3, codebook_entropy="joint"))(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 3)
    p_plus = torch.sigmoid(-((flat - 1) ** 2) + (flat + 1) ** 2)  # (N, 3)
    codes = torch.tensor([[(c >> (2 - i)) & 1 for i in range(3)] for c in range(8)]).float()  # MSB first
    probs = (p_plus[:, None, :] * codes + (1 - p_plus[:, None, :]) * (1 - codes)).prod(-1).mean(0)
    torch.testing.assert_close(out.codebook_entropy, -(probs * probs.log()).sum() / 3)


def test_joint_codebook_entropy_config_is_checked():
    with pytest.raises(ValueError, match="codebook_entropy"):
        LFQConfig(codebook_entropy="full")
    with pytest.raises(ValueError, match="codebook_dim <= 16"):
        LFQConfig(codebook_dim=18, codebook_entropy="joint")


@pytest.mark.parametrize("d", [1, 4, 13])
def test_joint_codebook_entropy_factorised_equals_the_full_code_table(d):
    """The split-bits form gives the entropy of the explicit ``(N, 2^d)`` table and the same gradient for the
    per-bit logits (the two differ only along the normalisation direction, which ``log_softmax`` removes)."""
    torch.manual_seed(d)
    q = LFQuantizer(LFQConfig(codebook_dim=d, codebook_entropy="joint"))
    logits = (torch.randn(40, d, 2) * 2).requires_grad_()
    log_probs = torch.log_softmax(logits, dim=-1)
    fast = q._joint_codebook_entropy(log_probs)
    (grad_fast,) = torch.autograd.grad(fast, logits, retain_graph=True)
    bits = (q.embedding > 0).float()  # (2^d, d), code order
    table = torch.softmax(log_probs[..., 0] @ bits.T + log_probs[..., 1] @ (1.0 - bits).T, dim=-1).mean(0)
    full = -(table * table.clamp_min(1e-38).log()).sum() / d
    (grad_full,) = torch.autograd.grad(full, logits)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_fast, grad_full, rtol=1e-4, atol=1e-6)
