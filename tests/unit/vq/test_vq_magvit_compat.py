"""load_magvitv2 infers everything from a MAGVIT-v2 config: attention levels, uneven block counts, folder layouts."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from unif2ace.compat.magvit import load_magvitv2, magvit_model_config
from unif2ace.tokenizer.vq.model import VQModel

CONFIG = {
    "encoder_kwargs": {
        "ch": 32,
        "ch_mult": [1, 2, 2],
        "num_res_blocks": [2, 1, 1],
        "attn_resolutions": [16],
        "dropout": 0.0,
        "in_ch": 3,
        "out_ch": 3,
        "resolution": 32,
        "z_channels": 5,
        "double_z": False,
    },
    "decoder_kwargs": {
        "ch": 32,
        "ch_mult": [1, 1, 2],
        "num_res_blocks": [1, 2, 1],
        "attn_resolutions": [8, 16],
        "dropout": 0.0,
        "in_ch": 3,
        "out_ch": 3,
        "resolution": 32,
        "z_channels": 5,
        "double_z": False,
    },
    "quantizer_kwargs": {"codebook_dim": 5, "beta": 0.5, "entropy_multiplier": 0.2, "commit_loss_multiplier": 0.3},
    "codebook_size": 32,
}


def test_config_translation_and_upstream_key_rules():
    cfg = magvit_model_config(CONFIG)
    assert cfg.quantizer.beta == 0.5 and cfg.quantizer.entropy_multiplier == 0.2 and cfg.downsample_factor == 4
    with torch.device("meta"):
        sd = VQModel(cfg).state_dict()
    # encoder: resolution 32 -> levels at 32, 16, 8 px; attention after each block of the 16 px level only
    assert "encoder.down.0.block.1.conv1.weight" in sd and "encoder.down.1.block.1.conv1.weight" not in sd
    assert "encoder.down.1.attn.0.q.weight" in sd and not any(k.startswith("encoder.down.0.attn") for k in sd)
    assert "encoder.down.1.downsample.conv.weight" in sd and "encoder.down.2.downsample.conv.weight" not in sd
    assert sd["encoder.down.1.block.0.nin_shortcut.weight"].shape == (64, 32, 1, 1)
    assert "encoder.down.2.block.0.nin_shortcut.weight" not in sd  # 64 -> 64
    # decoder: coarsest level 2 at 8 px (attn), level 1 at 16 px (attn, 2 blocks), level 0 at 32 px (none)
    assert "decoder.up.2.attn.0.q.weight" in sd and "decoder.up.1.attn.1.proj_out.weight" in sd
    assert not any(k.startswith("decoder.up.0.attn") for k in sd) and "decoder.up.0.upsample.conv.weight" not in sd
    assert sd["decoder.up.1.block.0.nin_shortcut.weight"].shape == (32, 64, 1, 1)


def test_folder_with_config_loads_strictly_and_runs(tmp_path):
    torch.manual_seed(0)
    reference = VQModel(magvit_model_config(CONFIG)).eval()
    folder = tmp_path / "magvit"
    folder.mkdir()
    save_file({f"module.{k}": v.contiguous() for k, v in reference.state_dict().items()}, folder / "model.safetensors")
    (folder / "magvit_config.json").write_text(json.dumps(CONFIG))
    model = load_magvitv2(folder)  # config found beside the weights, wrapper prefix dropped
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.encode(x), reference.encode(x))
        assert model.encode(x).shape == (2, 64)


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"encoder_kwargs": {"temb_ch": 3}}, "unknown encoder arguments"),
        ({"quantizer_kwargs": {"codebook_dim": 6}}, "z_channels"),
        ({"encoder_kwargs": {"double_z": True}}, "double_z"),
    ],
)
def test_unsupported_configs_are_refused(patch, match):
    cfg = json.loads(json.dumps(CONFIG))
    for section, values in patch.items():
        cfg[section].update(values)
    with pytest.raises(ValueError, match=match):
        magvit_model_config(cfg)


def test_missing_weights_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no MAGVIT-v2 weights"):
        load_magvitv2(tmp_path)
