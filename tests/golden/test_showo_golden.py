"""Golden tests: our model loaded from the Show-o fixture reproduces upstream logits and losses."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from unif2ace.compat.showo import load_showo, ours_to_showo, showo_model_config, showo_to_ours
from unif2ace.losses.masked_ce import masked_token_ce
from unif2ace.losses.text import next_token_ce

pytestmark = pytest.mark.golden


@pytest.fixture(scope="module")
def showo(fixtures_dir):
    return load_showo(fixtures_dir / "showo_state_dict.safetensors", fixtures_dir / "showo_config.json")


@pytest.fixture(scope="module")
def batch(fixtures_dir):
    return load_file(str(fixtures_dir / "showo_batch.safetensors"))


def test_config_translation(fixtures_dir):
    cfg = showo_model_config(fixtures_dir / "showo_config.json")
    layout = json.loads((fixtures_dir / "showo_config.json").read_text())["vocab_layout"]
    assert cfg.vocab.vocab_size == layout["vocab_size"]
    assert cfg.vocab.mask_id == layout["mask_token_id"]
    assert cfg.vocab.image_offset == layout["image_token_offset"]
    for tok, idx in layout["special_token_ids"].items():
        if tok not in ("<|sot|>", "<|eot|>"):
            assert cfg.vocab.special_id(tok) == idx
    assert cfg.vocab.bos_id == layout["special_token_ids"]["<|sot|>"]


def test_logits_match_upstream(showo, batch):
    with torch.no_grad():
        out = showo(batch["input_ids"], attention_mask=batch["attention_mask_additive"])
    torch.testing.assert_close(out.logits, batch["logits"], atol=1e-5, rtol=1e-5)


def test_bool_mask_equals_additive(showo, batch):
    bool_mask = torch.cat([batch[f"{k}_attention_mask_bool"] for k in ("t2i", "lm", "mmu")])
    assert torch.equal(bool_mask, batch["attention_mask_additive"] == 0)
    with torch.no_grad():
        out = showo(batch["input_ids"], attention_mask=bool_mask)
    torch.testing.assert_close(out.logits, batch["logits"], atol=1e-5, rtol=1e-5)


def test_losses_match_upstream(showo, batch, fixtures_dir):
    meta = json.loads((fixtures_dir / "showo_batch.json").read_text())
    with torch.no_grad():
        logits = showo(batch["input_ids"], attention_mask=batch["attention_mask_additive"]).logits
    labels = batch["labels"]
    start = 17  # max_text_len + 1 of the fixture layout
    loss_t2i = masked_token_ce(logits[:3, start:], labels[:3, start:])
    loss_lm = next_token_ce(logits[3:5], labels[3:5])
    loss_mmu = next_token_ce(logits[5:], labels[5:])
    torch.testing.assert_close(loss_t2i, batch["loss_t2i"], atol=1e-5, rtol=0)
    torch.testing.assert_close(loss_lm, batch["loss_lm"], atol=1e-5, rtol=0)
    torch.testing.assert_close(loss_mmu, batch["loss_mmu"], atol=1e-5, rtol=0)
    # the plain-torch definition agrees (loss_t2i: unshifted CE incl. soi/eoi terms)
    ref = F.cross_entropy(logits[:3, start:].reshape(-1, logits.shape[-1]), labels[:3, start:].reshape(-1))
    torch.testing.assert_close(ref, batch["loss_t2i"], atol=1e-5, rtol=0)
    assert int((labels[:3, start:] != -100).sum()) == meta["loss_t2i_num_non_ignored_terms"]


def test_only_used_logits_equal_full_slices(showo, batch, fixtures_dir):
    cfg = showo_model_config(fixtures_dir / "showo_config.json")
    v = cfg.vocab
    ids, mask = batch["input_ids"][:3], batch["attention_mask_additive"][:3]
    positions = torch.arange(18, 34).expand(3, -1)  # the 16 image positions of the T2I rows
    with torch.no_grad():
        full = showo(ids, attention_mask=mask).logits
        part = showo(
            ids, attention_mask=mask, logits_positions=positions, vocab_range=(v.image_offset, v.mask_id)
        ).logits
        bool_pos = torch.zeros_like(ids, dtype=torch.bool)
        bool_pos[:, 18:34] = True
        flat = showo(ids, attention_mask=mask, logits_positions=bool_pos).logits
    torch.testing.assert_close(part, full[:, 18:34, v.image_offset : v.mask_id], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(flat, full[bool_pos], atol=1e-6, rtol=1e-6)


def test_sampling_step_logits(showo, fixtures_dir):
    """Step-0 (all-mask) logits of the generation runs equal upstream's recorded model outputs."""
    s = load_file(str(fixtures_dir / "showo_sampling.safetensors"))
    v = showo_model_config(fixtures_dir / "showo_config.json").vocab
    n = s["gen.gs0.0.step_sampled_ids"].shape[-1]
    for tag in ("gs0.0", "gs1.5"):
        ids = s["gen.input_ids"]
        if tag == "gs1.5":
            ids = torch.cat([ids, s["gen.uncond_input_ids"]])
        with torch.no_grad():
            logits = showo(ids, attention_mask=s[f"gen.{tag}.attention_mask_additive"]).logits
        got = logits[:, -(n + 1) : -1, v.image_offset : v.mask_id]
        torch.testing.assert_close(got, s[f"gen.{tag}.step_model_logits_img_codebook"][0], atol=1e-5, rtol=1e-5)


def test_key_mapping_round_trip(fixtures_dir):
    state = load_file(str(fixtures_dir / "showo_state_dict.safetensors"))
    back = ours_to_showo(showo_to_ours(state))
    assert set(back) == set(state)


def test_bad_checkpoint_messages(tmp_path, fixtures_dir):
    state = load_file(str(fixtures_dir / "showo_state_dict.safetensors"))
    state.pop("showo.lm_head.bias")
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="missing 1 key"):
        load_showo(tmp_path / "w.safetensors", fixtures_dir / "showo_config.json")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read weights file"):
        load_showo(tmp_path / "bad.safetensors", fixtures_dir / "showo_config.json")
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_showo(tmp_path / "nothing.safetensors", fixtures_dir / "showo_config.json")
