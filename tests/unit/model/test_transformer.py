"""Transformer invariants: KV cache, pad trimming with positions, checkpointing, save/load, presets, errors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from unif2ace.config import ConfigError, ModelConfig, VocabConfig, from_dict
from unif2ace.model import build_model, get_preset, list_presets, load_pretrained, save_pretrained
from unif2ace.model.masks import decode_mask

SRC = Path(__file__).resolve().parents[3] / "src" / "unif2ace"


def _cfg(**kw) -> ModelConfig:
    base = dict(
        vocab=VocabConfig(llm_vocab_size=50, codebook_size=16, bos_id=0, eos_id=0),
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=64,
    )
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = build_model(_cfg()).eval()
    for p in m.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    return m


def test_kv_cache_incremental_equals_full(model):
    ids = torch.randint(0, 50, (2, 12))
    causal = torch.ones(12, 12, dtype=torch.bool).tril()[None, None].expand(2, 1, 12, 12)
    with torch.no_grad():
        full = model(ids, attention_mask=causal).logits
        out = model(ids[:, :7], attention_mask=causal[:, :, :7, :7], use_cache=True)
        cache = out.past_key_values
        steps = [out.logits]
        for t in range(7, 12):
            mask = decode_mask(torch.ones(2, t + 1, dtype=torch.bool), 1)
            o = model(ids[:, t : t + 1], attention_mask=mask, past_key_values=cache, use_cache=True)
            steps.append(o.logits)
    assert len(cache) == 12
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_read_only_cache_is_not_mutated(model):
    ids = torch.randint(0, 50, (1, 6))
    with torch.no_grad():
        cache = model(ids[:, :4], use_cache=True).past_key_values
        model(ids[:, 4:], past_key_values=cache)
    assert len(cache) == 4


def test_trimming_leading_pads_with_positions_is_exact(model):
    pad = model.config.vocab.pad_id
    ids = torch.tensor([[pad, pad, pad, 5, 6, 7, 8], [pad, pad, 9, 10, 11, 12, 13]])
    valid = ids != pad
    mask = torch.ones(7, 7, dtype=torch.bool).tril()[None] & valid[:, None, :]
    mask |= torch.eye(7, dtype=torch.bool)[None]
    with torch.no_grad():
        full = model(ids, attention_mask=mask[:, None]).logits
        pos = torch.arange(2, 7).expand(2, 5)
        trimmed = model(ids[:, 2:], attention_mask=mask[:, None, 2:, 2:], position_ids=pos).logits
    torch.testing.assert_close(trimmed[1:], full[1:, 2:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(trimmed[0, 1:], full[0, 3:], atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_same_loss_and_grads():
    torch.manual_seed(0)
    a = build_model(_cfg())
    b = build_model(_cfg(gradient_checkpointing=True))
    b.load_state_dict(a.state_dict())
    ids = torch.randint(0, 50, (2, 9))
    for m in (a, b):
        m.train()
        m(ids).logits.logsumexp(-1).mean().backward()
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-6, rtol=1e-5, msg=n)


def test_sequential_block_form_runs_and_differs():
    torch.manual_seed(0)
    m = build_model(_cfg(block_form="sequential"))
    assert hasattr(m.blocks[0], "post_attention_layernorm")
    assert m(torch.randint(0, 50, (1, 5))).logits.shape == (1, 5, m.config.vocab.vocab_size)


def test_save_load_round_trip(tmp_path, model):
    save_pretrained(model, tmp_path / "m")
    again = load_pretrained(tmp_path / "m")
    ids = torch.randint(0, 50, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, model(ids).logits)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_pretrained(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_pretrained(tmp_path / "nowhere")


def test_presets_sizes():
    assert {"unif2ace_tiny", "showo_1b3", "unif2ace_1b8"} <= set(list_presets())
    tiny = build_model(get_preset("unif2ace_tiny"))
    assert tiny.num_parameters() <= 5_000_000
    with torch.device("meta"):
        showo = build_model(get_preset("showo_1b3"))
    assert 1.40e9 < showo.num_parameters() < 1.50e9  # spec §2.1: ≈ 1.448 B with the 58498-row vocabulary
    with pytest.raises(ValueError, match="unknown model preset"):
        get_preset("gigantic")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"num_heads": 5}, "model.num_heads"),
        ({"block_form": "diagonal"}, "model.block_form"),
        ({"token_moe": {"enabled": True, "num_routed": 2, "top_k": 3}}, "token_moe.top_k"),
        ({"seq_moe": {"top_k": 9}}, "seq_moe.top_k"),
        ({"hidden_size": "wide"}, "model.hidden_size"),
    ],
)
def test_bad_configs_name_the_field(change, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as err:
        from_dict(ModelConfig, change, prefix="model")
    assert "\n" not in str(err.value)


def test_unknown_expert_kind_and_key_named():
    with pytest.raises(ConfigError, match="seq_moe.und_experts.*'clop'"):
        from_dict(ModelConfig, {"seq_moe": {"und_experts": ["clop", "copy"]}}, prefix="model")
    with pytest.raises(ConfigError, match="model.hiden_size"):
        from_dict(ModelConfig, {"hiden_size": 3}, prefix="model")


def test_model_package_imports_no_upper_layers():
    banned = ("unif2ace.losses", "unif2ace.sampling", "unif2ace.training", "unif2ace.data")
    for path in (SRC / "model").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(banned), f"{path.name} imports {name}"
