"""--init-from a dense (Show-o-like) checkpoint into a token-MoE model upcycles the MLPs: same logits at step 0."""

from __future__ import annotations

import torch
from train_helpers import make_dataset, model_factory, tiny_config

from unif2ace.training.init import load_weights_into
from unif2ace.training.run import build_batch_builder
from unif2ace.utils.io import save_tensors

MOE = {"enabled": True, "num_routed": 4, "top_k": 2, "routed_intermediate": 16, "shared_intermediate": 64}


def test_dense_checkpoint_upcycles_into_token_moe(tmp_path):
    records, tokens = make_dataset(tmp_path)
    dense_cfg = tiny_config(records, tokens)
    moe_cfg = tiny_config(records, tokens, **{"model.token_moe": MOE})
    factory = model_factory()
    torch.manual_seed(1)
    dense = factory(dense_cfg).eval()
    save_tensors(tmp_path / "showo" / "model.safetensors", dense.state_dict())
    moe = factory(moe_cfg).eval()
    report = load_weights_into(moe, tmp_path / "showo", strict=False)
    assert report["upcycled"] == dense_cfg.model.num_layers and report["kept_fresh"] == 0
    batch = build_batch_builder(dense_cfg).build(0, 0, 2, 2)
    with torch.no_grad():
        kwargs = dict(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            ctx=batch.routing_context(),
        )
        expected, got = dense(**kwargs).logits, moe(**kwargs).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_ema_starts_from_the_init_from_weights(tmp_path):
    from unif2ace.training.run import run_training

    records, tokens = make_dataset(tmp_path)
    source_cfg = tiny_config(records, tokens, **{"stages": [{"name": "m", "steps": 2, "lr": 1e-2}]})
    source = run_training(source_cfg, tmp_path / "src", model_factory=model_factory(), cpu=True).checkpoint
    cfg = tiny_config(records, tokens, **{"train.ema_decay": 0.999, "stages": [{"name": "m", "steps": 1, "lr": 1e-9}]})
    result = run_training(cfg, tmp_path / "ft", init_from=source, model_factory=model_factory(), cpu=True)
    from unif2ace.utils.io import load_tensors

    ema, start = load_tensors(result.checkpoint / "ema.safetensors"), load_tensors(source / "model.safetensors")
    for name, value in start.items():  # lr ~ 0: the average must stay at the initial (init-from) weights
        torch.testing.assert_close(ema[name], value, rtol=1e-5, atol=1e-6)


def test_init_new_codebook_carries_text_rows_and_keeps_image_rows_fresh(tmp_path):
    """A model moved to another image tokenizer: text / special / mask rows copied, image-code rows fresh."""
    import pytest

    records, tokens = make_dataset(tmp_path)
    factory = model_factory()
    source_cfg = tiny_config(records, tokens)
    torch.manual_seed(1)
    source = factory(source_cfg).eval()
    save_tensors(tmp_path / "old" / "model.safetensors", source.state_dict())
    vocab = source_cfg.model.vocab
    bigger = tiny_config(records, tokens, **{"model.vocab.codebook_size": vocab.codebook_size * 4})
    torch.manual_seed(2)
    target = factory(bigger).eval()
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match="train.init_new_codebook=true"):
        load_weights_into(target, tmp_path / "old", strict=False)
    assert all(torch.equal(fresh[k], v) for k, v in target.state_dict().items())  # refused before any copy
    load_weights_into(target, tmp_path / "old", strict=False, new_codebook=True)
    old, new = source.state_dict(), target.state_dict()
    keep = vocab.image_offset
    vocab_keys = [k for k in new if k.endswith(("embed_tokens.weight", "lm_head.weight", "lm_head.bias"))]
    assert len(vocab_keys) == 3
    for key in vocab_keys:
        assert new[key].shape[0] == bigger.model.vocab.vocab_size
        torch.testing.assert_close(new[key][:keep], old[key][:keep], rtol=0, atol=0)
        torch.testing.assert_close(new[key][-1], old[key][-1], rtol=0, atol=0)  # the mask token
        torch.testing.assert_close(new[key][keep:-1], fresh[key][keep:-1], rtol=0, atol=0)
    for key in set(new) - set(vocab_keys):
        torch.testing.assert_close(new[key], old[key], rtol=0, atol=0)
    # a text-only sequence sees the same model: same logits over the text + special ids
    ids = torch.randint(0, vocab.llm_vocab_size, (1, 10))
    with torch.no_grad():
        a, b = source(input_ids=ids).logits[..., :keep], target(input_ids=ids).logits[..., :keep]
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    smaller = tiny_config(records, tokens, **{"model.vocab.llm_vocab_size": vocab.llm_vocab_size * 2})
    with pytest.raises(ValueError, match="embed_tokens.weight"):  # another text vocabulary is still refused
        load_weights_into(factory(smaller), tmp_path / "old", strict=False, new_codebook=True)
