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
