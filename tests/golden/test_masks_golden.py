"""Our omni-attention masks equal Show-o's on the fixture batches (exactly)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from unif2ace.model.masks import decode_mask, mmu_attention_mask, omni_attention_mask, to_additive

pytestmark = pytest.mark.golden
PAD, SOI, EOI = 300, 301, 302


@pytest.fixture(scope="module")
def batch(fixtures_dir):
    return load_file(str(fixtures_dir / "showo_batch.safetensors"))


def test_t2i_masks(batch):
    got = omni_attention_mask(batch["t2i_input_ids"], PAD, SOI, EOI, rm_pad_in_image=True)
    assert torch.equal(got, batch["t2i_attention_mask_bool"])
    assert torch.equal(to_additive(got) == 0, batch["t2i_attention_mask_additive"] == 0)


def test_lm_masks(batch):
    got = omni_attention_mask(batch["lm_input_ids"], PAD, SOI, EOI, rm_pad_in_image=False)
    assert torch.equal(got, batch["lm_attention_mask_bool"])


def test_mmu_masks(batch):
    got = mmu_attention_mask(batch["mmu_input_ids"], EOI)
    assert torch.equal(got, batch["mmu_attention_mask_bool"])
    assert torch.equal(mmu_attention_mask(batch["mmu_input_ids"], EOI, per_row=True), got)  # same layout per row


def test_generation_masks(fixtures_dir):
    s = load_file(str(fixtures_dir / "showo_sampling.safetensors"))
    ids = torch.cat([s["gen.input_ids"], s["gen.uncond_input_ids"]])
    got = omni_attention_mask(ids, PAD, SOI, EOI, rm_pad_in_image=True)
    assert torch.equal(to_additive(got) == 0, s["gen.gs1.5.attention_mask_additive"] == 0)


def test_mask_invariants(batch):
    ids = batch["t2i_input_ids"]
    m = omni_attention_mask(ids, PAD, SOI, EOI)[:, 0]
    assert m.any(-1).all(), "no fully masked row"
    img = (ids >= 310) | (ids == SOI) | (ids == EOI)
    pad = ids == PAD
    for b in range(ids.shape[0]):
        rows = img[b].nonzero().squeeze(1)
        assert m[b][rows][:, img[b]].all(), "image block is bidirectional"
        assert not m[b][rows][:, pad[b]].any(), "image rows never see pads"
        text_rows = (~img[b] & ~pad[b]).nonzero().squeeze(1)
        assert not m[b][text_rows][:, img[b]].any(), "text rows never see the image"


def test_decode_mask_matches_full_causal_slice():
    valid = torch.tensor([[False, True, True, True, True], [True, True, True, True, True]])
    full = torch.ones(5, 5, dtype=torch.bool).tril()[None] & valid[:, None, :]
    full |= torch.eye(5, dtype=torch.bool)[None]
    got = decode_mask(valid, 2)[:, 0]
    assert torch.equal(got, full[:, 3:])
