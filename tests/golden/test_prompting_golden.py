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
    assert torch.equal(out.attention_mask(prompter.v), b["t2i_attention_mask_bool"])


def test_lm(setup):
    prompter, meta, b = setup
    out = prompter.lm(meta["texts_lm"], b["lm_input_ids"].shape[1])
    assert torch.equal(out.input_ids, b["lm_input_ids"])
    assert torch.equal(out.labels, b["lm_labels"])
    assert torch.equal(out.attention_mask(prompter.v), b["lm_attention_mask_bool"])


def test_mmu(setup):
    prompter, meta, b = setup
    out = prompter.mmu(b["mmu_image_ids"], meta["texts_mmu"])
    assert torch.equal(out.input_ids, b["mmu_input_ids"])
    assert torch.equal(out.labels, b["mmu_labels"])
    assert torch.equal(out.attention_mask(prompter.v), b["mmu_attention_mask_bool"])


def test_generation_prompts(setup, fixtures_dir):
    prompter, _, _ = setup
    s = load_file(str(fixtures_dir / "showo_sampling.safetensors"))
    prompts = json.loads((fixtures_dir / "showo_sampling.json").read_text())["gen_prompts"]
    assert torch.equal(prompter.t2i_gen(prompts).input_ids, s["gen.input_ids"])
    assert torch.equal(prompter.t2i_gen([""] * len(prompts)).input_ids, s["gen.uncond_input_ids"])
