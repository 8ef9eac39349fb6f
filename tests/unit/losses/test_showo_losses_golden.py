"""Show-o masking and losses against the upstream batch (fixtures showo_batch.*)."""

from __future__ import annotations

import pytest
import torch

from unif2ace.losses import CosineSchedule, mask_tokens, masked_token_ce, next_token_ce
from unif2ace.utils.io import load_tensors, read_json

pytestmark = pytest.mark.golden


@pytest.fixture(scope="module")
def batch(fixtures_dir):
    return load_tensors(fixtures_dir / "showo_batch.safetensors"), read_json(fixtures_dir / "showo_batch.json")


def test_mask_or_random_replace_tokens(batch):
    t, meta = batch
    cfg = meta["mask_or_random_replace_tokens"]
    torch.manual_seed(cfg["torch.manual_seed"])
    out = mask_tokens(t["t2i_image_ids"], cfg["mask_id"], CosineSchedule(), min_masking_rate=cfg["min_masking_rate"])
    assert torch.equal(out.timesteps, t["t2i_timesteps_drawn"])
    assert torch.equal(out.mask_prob, t["t2i_mask_prob"])
    assert torch.equal(out.input_ids, t["t2i_masked_image_ids"])
    assert torch.equal(out.labels, t["t2i_image_labels"])


def test_loss_t2i(batch):
    t, meta = batch
    start = meta["max_seq_length"] + 1
    bt = meta["batch_size_t2i"]
    loss = masked_token_ce(t["logits"][:bt], t["labels"][:bt], positions=slice(start, None))
    torch.testing.assert_close(loss, t["loss_t2i"], atol=1e-5, rtol=0)
    assert int((t["labels"][:bt, start:] != -100).sum()) == meta["loss_t2i_num_non_ignored_terms"]


def test_loss_lm_and_mmu(batch):
    t, meta = batch
    bt, bl = meta["batch_size_t2i"], meta["batch_size_lm"]
    lm = next_token_ce(t["logits"][bt : bt + bl], t["labels"][bt : bt + bl])
    mmu = next_token_ce(t["logits"][bt + bl :], t["labels"][bt + bl :])
    torch.testing.assert_close(lm, t["loss_lm"], atol=1e-5, rtol=0)
    torch.testing.assert_close(mmu, t["loss_mmu"], atol=1e-5, rtol=0)


def test_codebook_slice_ce(batch):
    """Restricting the softmax to the codebook columns equals a CE on the sliced logits with shifted labels."""
    t, meta = batch
    start, bt, offset = meta["max_seq_length"] + 1, meta["batch_size_t2i"], 310
    logits, labels = t["logits"][:bt, start + 1 : -1], t["t2i_image_labels"]
    loss = masked_token_ce(logits, labels, vocab=slice(offset, offset + 64))
    mask = labels != -100
    logp = logits[..., offset : offset + 64].log_softmax(-1)
    manual = -logp[mask].gather(-1, (labels[mask] - offset)[:, None]).mean()
    torch.testing.assert_close(loss, manual)
