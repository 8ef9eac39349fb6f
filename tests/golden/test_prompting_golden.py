"""Our Prompter reproduces Show-o's UniversalPrompting ids and labels exactly (fixture texts)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from unif2ace.compat.showo import showo_model_config
from unif2ace.tokenizer import Prompter, WordLevelTokenizer

pytestmark = pytest.mark.golden


@pytest.fixture(scope="module")
def setup(fixtures_dir):
    vocab = showo_model_config(fixtures_dir / "showo_config.json").vocab
    meta = json.loads((fixtures_dir / "showo_batch.json").read_text())
    prompter = Prompter(WordLevelTokenizer(300, 256), vocab, meta["max_seq_length"], 16)
    return prompter, meta, load_file(str(fixtures_dir / "showo_batch.safetensors"))


def test_t2i(setup):
    prompter, meta, b = setup
    out = prompter.t2i(meta["texts_t2i"], b["t2i_masked_image_ids"], b["t2i_image_labels"])
    assert torch.equal(out.input_ids, b["t2i_input_ids"])
    assert torch.equal(out.labels, b["t2i_labels"])
    assert torch.equal(out.attention_mask(), b["t2i_attention_mask_bool"])


def test_lm(setup):
    prompter, meta, b = setup
    out = prompter.lm(meta["texts_lm"], b["lm_input_ids"].shape[1])
    assert torch.equal(out.input_ids, b["lm_input_ids"])
    assert torch.equal(out.labels, b["lm_labels"])
    assert torch.equal(out.attention_mask(), b["lm_attention_mask_bool"])


def test_mmu(setup):
    prompter, meta, b = setup
    out = prompter.mmu(b["mmu_image_ids"], meta["texts_mmu"])
    assert torch.equal(out.input_ids, b["mmu_input_ids"])
    assert torch.equal(out.labels, b["mmu_labels"])
    assert torch.equal(out.attention_mask(), b["mmu_attention_mask_bool"])


def test_generation_prompts(setup, fixtures_dir):
    prompter, _, _ = setup
    s = load_file(str(fixtures_dir / "showo_sampling.safetensors"))
    prompts = json.loads((fixtures_dir / "showo_sampling.json").read_text())["gen_prompts"]
    assert torch.equal(prompter.t2i_gen(prompts).input_ids, s["gen.input_ids"])
    assert torch.equal(prompter.t2i_gen([""] * len(prompts)).input_ids, s["gen.uncond_input_ids"])


def test_concatenated_training_batch(setup):
    """Rows [t2i; lm; mmu] are exactly the batch ``Showo.forward`` got, ids and labels."""
    prompter, meta, b = setup
    parts = [
        prompter.t2i(meta["texts_t2i"], b["t2i_masked_image_ids"], b["t2i_image_labels"]),
        prompter.lm(meta["texts_lm"], b["input_ids"].shape[1]),
        prompter.mmu(b["mmu_image_ids"], meta["texts_mmu"]),
    ]
    assert torch.equal(torch.cat([x.input_ids for x in parts]), b["input_ids"])
    assert torch.equal(torch.cat([x.labels for x in parts]), b["labels"])
    blocked = torch.cat([~x.attention_mask() for x in parts])
    assert torch.equal(blocked, b["attention_mask_additive"] != 0)  # additive: 0 allowed, large negative blocked


def test_condition_masks_on_fixture_rows(setup):
    prompter, meta, b = setup
    t2i = prompter.t2i(meta["texts_t2i"], b["t2i_masked_image_ids"], b["t2i_image_labels"])
    t2i_id = prompter.v.special_id("<|t2i|>")
    for row in range(3):
        start = int((t2i.input_ids[row] == t2i_id).nonzero())
        expect = torch.zeros(35, dtype=torch.bool)
        expect[start:17] = True  # <|t2i|> bos text eos
        assert torch.equal(t2i.pool_mask[row], expect)
    assert torch.equal(t2i.image_mask, (t2i.input_ids >= 310) & (torch.arange(35) > 17) & (torch.arange(35) < 34))
    mmu = prompter.mmu(b["mmu_image_ids"], meta["texts_mmu"])
    assert mmu.pool_mask[:, :19].all() and not mmu.pool_mask[:, 19:].any()  # <|mmu|> <|soi|> image <|eoi|>
