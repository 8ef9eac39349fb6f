"""Our omni-attention masks equal Show-o's on the fixture batches (exactly)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from unif2ace.model.masks import (
    causal_mask,
    decode_mask,
    mmu_attention_mask,
    omni_attention_mask,
    segment_mask,
    to_additive,
)

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
        assert not (m[b][text_rows] & ~causal_mask(35)[text_rows]).any(), "text rows are causal"
        assert not m[b][text_rows][:, pad[b]].any(), "text rows never see pads"


def test_decode_mask_matches_full_causal_slice():
    valid = torch.tensor([[False, True, True, True, True], [True, True, True, True, True]])
    full = torch.ones(5, 5, dtype=torch.bool).tril()[None] & valid[:, None, :]
    full |= torch.eye(5, dtype=torch.bool)[None]
    got = decode_mask(valid, 2)[:, 0]
    assert torch.equal(got, full[:, 3:])


@pytest.mark.parametrize("rm_pad", [True, False])
def test_segment_mask_is_the_segment_rows_of_the_omni_mask(batch, fixtures_dir, rm_pad):
    s = load_file(str(fixtures_dir / "showo_sampling.safetensors"))
    for ids in (batch["t2i_input_ids"], torch.cat([s["gen.input_ids"], s["gen.uncond_input_ids"]])):
        p = int((ids[0] == SOI).nonzero())  # the text prefix: max_text_len + 1 positions
        full = omni_attention_mask(ids, PAD, SOI, EOI, rm_pad_in_image=rm_pad)
        got = segment_mask(ids[:, :p] != PAD, ids.shape[1] - p, rm_pad_in_image=rm_pad)
        assert torch.equal(got, full[:, :, p:, :])


def test_decode_mask_reproduces_mmu_and_lm_rows_for_every_cache_split(batch):
    ids = batch["mmu_input_ids"]
    b, n = ids.shape
    eoi = (ids == EOI).int().argmax(1)
    before_eoi = torch.arange(n)[None] <= eoi[:, None]  # (B, L)
    full = mmu_attention_mask(ids, EOI, per_row=True)
    lm_full = omni_attention_mask(batch["lm_input_ids"], PAD, SOI, EOI, rm_pad_in_image=False)
    everything = torch.ones(b, n, dtype=torch.bool)
    for t in range(n):
        assert torch.equal(decode_mask(everything, n - t, visible_prefix=before_eoi), full[:, :, t:, :])
        assert torch.equal(decode_mask(everything, n - t), lm_full[:, :, t:, :])


def test_to_additive_dtypes():
    m = torch.tensor([[True, False], [True, True]])
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        add = to_additive(m, dtype)
        assert add.dtype == dtype and torch.equal(add == 0, m) and (add[~m] == torch.finfo(dtype).min).all()
        assert torch.equal(torch.softmax(add.float(), -1)[0], torch.tensor([1.0, 0.0]))
