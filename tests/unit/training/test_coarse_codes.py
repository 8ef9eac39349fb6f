"""Curricula: the low bits of the codes first, then all bits from the parents; the first records of a corpus first."""

from __future__ import annotations

import json
import math

import pytest
import torch
from train_helpers import make_dataset, model_factory, tiny_config

from unif2ace.config.base import ConfigError
from unif2ace.data.dataset import load_records
from unif2ace.training.init import load_weights_into
from unif2ace.training.run import build_batch_builder
from unif2ace.utils.io import save_tensors


def test_code_bits_train_on_the_low_bits(tmp_path):
    records, tokens = make_dataset(tmp_path, codebook=64)
    full = build_batch_builder(tiny_config(records, tokens)).build(0, 0, 3, 2)
    coarse_cfg = tiny_config(records, tokens, **{"data.code_bits": 4, "model.vocab.codebook_size": 16})
    coarse = build_batch_builder(coarse_cfg).build(0, 0, 3, 2)
    assert torch.equal(coarse.image_x0, full.image_x0 % 16)  # same faces, same order, 4 low bits
    assert int(full.image_x0.max()) >= 16  # (the fixture's codes do use the high bits)
    offset = coarse_cfg.model.vocab.image_offset
    mmu_images = coarse.input_ids[coarse.num_t2i :]
    image_ids = mmu_images[(mmu_images >= offset) & (mmu_images < offset + 64)]
    assert int(image_ids.max()) < offset + 16  # the MMU rows see the coarse codes too
    with pytest.raises(ConfigError, match="data.code_bits"):
        tiny_config(records, tokens, **{"data.code_bits": 4})  # 16 codes, but the model has 64
    with pytest.raises(ConfigError, match="init_codebook_from_parent"):
        tiny_config(records, tokens, **{"train.init_codebook_from_parent": True})


def test_parent_init_makes_the_fine_model_the_coarse_one(tmp_path):
    records, tokens = make_dataset(tmp_path, codebook=64)
    factory = model_factory()
    coarse_cfg = tiny_config(records, tokens, **{"data.code_bits": 4, "model.vocab.codebook_size": 16})
    torch.manual_seed(1)
    coarse = factory(coarse_cfg).eval()
    save_tensors(tmp_path / "coarse" / "model.safetensors", coarse.state_dict())
    fine_cfg = tiny_config(records, tokens)
    fine = factory(fine_cfg).eval()
    load_weights_into(fine, tmp_path / "coarse", strict=False, new_codebook=True, from_parent=True)

    vocab = fine_cfg.model.vocab
    kept = vocab.image_offset
    gen = torch.Generator().manual_seed(0)
    fine_codes = torch.randint(0, 64, (2, 16), generator=gen)
    text = torch.randint(0, vocab.llm_vocab_size, (2, 6), generator=gen)
    with torch.no_grad():
        a = coarse(input_ids=torch.cat([text, kept + fine_codes % 16], 1)).logits.log_softmax(-1)
        b = fine(input_ids=torch.cat([text, kept + fine_codes], 1)).logits.log_softmax(-1)
    # the fine model reads each code as its parent and splits the parent's probability evenly over 4 children
    parents = kept + torch.arange(64) % 16
    torch.testing.assert_close(b[..., kept : kept + 64], a[..., parents] - math.log(4), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b[..., :kept], a[..., :kept], rtol=1e-5, atol=1e-5)  # text + special ids
    torch.testing.assert_close(b[..., -1], a[..., -1], rtol=1e-5, atol=1e-5)  # mask id

    odd = tiny_config(records, tokens, **{"model.vocab.codebook_size": 24})
    with pytest.raises(ValueError, match="not a multiple"):
        load_weights_into(factory(odd), tmp_path / "coarse", strict=False, new_codebook=True, from_parent=True)


def test_first_records_train_on_the_start_of_the_file(tmp_path):
    records, tokens = make_dataset(tmp_path, num_images=12)
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    rows[1]["split"] = "test"  # the split filter applies after the cut: 5 of the first 6 records remain
    records.write_text("".join(json.dumps(r) + "\n" for r in rows))
    small = build_batch_builder(tiny_config(records, tokens, **{"data.first_records": 6}))
    assert [s.id for s in small.dataset] == ["img000", "img002", "img003", "img004", "img005"]
    full = build_batch_builder(tiny_config(records, tokens))
    assert len(full.dataset) == 11
    assert torch.equal(small.dataset[1].codes, full.dataset[1].codes)  # same tokens for the same face
    assert len(load_records(records, "train", first=100)) == 11  # more than the file holds: all of it
    with pytest.raises(ConfigError, match="data.first_records"):
        tiny_config(records, tokens, **{"data.first_records": -1})
    with pytest.raises(ValueError, match="first_records"):
        load_records(records, first=-2)
