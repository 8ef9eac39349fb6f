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
