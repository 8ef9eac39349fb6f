"""VQModel: shapes, dtypes, determinism, 8x / 16x downsampling, upstream key names of the full-size model."""

from __future__ import annotations

import pytest
import torch

from unif2ace.compat.magvit import magvit_model_config
from unif2ace.config.base import ConfigError, from_dict
from unif2ace.tokenizer.vq.config import ConvStackConfig, LFQConfig, VQConfig, VQModelConfig
from unif2ace.tokenizer.vq.model import VQModel


def tiny(levels: int = 4, dim: int = 6, attn: list[int] | None = None, size: int = 32) -> VQModelConfig:
    tower = ConvStackConfig(
        ch=16,
        ch_mult=[1, 2, 2, 2][:levels] + [2] * max(0, levels - 4),
        num_res_blocks=[1] * levels,
        attn_resolutions=attn or [],
        norm_groups=8,
    )
    return VQModelConfig(resolution=size, encoder=tower, decoder=tower, quantizer=LFQConfig(codebook_dim=dim))


@pytest.mark.parametrize(("levels", "factor"), [(4, 8), (5, 16)])
def test_encode_decode_shapes_dtype(levels, factor):
    torch.manual_seed(0)
    model = VQModel(tiny(levels, size=64)).eval()
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        codes = model.encode(images)
        recon = model.decode(codes)
        out = model(images)
    side = 64 // factor
    assert model.downsample_factor == factor
    assert codes.shape == (2, side * side) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < model.codebook_size
    assert recon.shape == images.shape and recon.dtype == torch.float32
    assert torch.equal(out.quant.codes.reshape(2, -1), codes)
    torch.testing.assert_close(out.reconstruction, recon)


def test_deterministic_and_batch_invariant():
    torch.manual_seed(1)
    model = VQModel(tiny(attn=[8])).eval()  # attention inside the 8x8 level too
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a, b = model.encode(images), model.encode(images)
        single = torch.cat([model.encode(images[i : i + 1]) for i in range(3)])
        assert torch.equal(a, b) and torch.equal(a, single)
        torch.testing.assert_close(model.decode(a), model.decode(a), rtol=0, atol=0)
    assert any(".attn.0." in k for k in model.state_dict())


def test_decode_non_square_grid():
    model = VQModel(tiny()).eval()
    images = torch.rand(1, 3, 32, 64) * 2 - 1
    with torch.no_grad():
        codes = model.encode(images)
        assert codes.shape == (1, 4 * 8)
        assert model.decode(codes, shape=(4, 8)).shape == (1, 3, 32, 64)


def test_bad_inputs_have_clear_errors():
    model = VQModel(tiny())
    with pytest.raises(ValueError, match="multiple of 8"):
        model.encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match="shape"):
        model.encode(torch.zeros(1, 1, 32, 32))


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="model.encoder.norm_groups"):
        VQModelConfig(encoder=ConvStackConfig(ch=48))
    with pytest.raises(ConfigError, match="model.quantizer.codebook_dim"):
        from_dict(VQConfig, {"model": {"quantizer": {"codebook_dim": 0}}})
    with pytest.raises(ConfigError, match="data.image_size"):
        from_dict(VQConfig, {"model": {"resolution": 64}, "data": {"image_size": 36}})


def test_full_size_magvitv2_has_upstream_layout():
    cfg = magvit_model_config(None)
    assert cfg == VQModelConfig()
    with torch.device("meta"):
        model = VQModel(cfg)
    sd = model.state_dict()
    assert model.codebook_size == 8192 and cfg.downsample_factor == 16
    assert sd["encoder.conv_in.weight"].shape == (128, 3, 3, 3)
    assert "encoder.down.0.block.3.conv1.weight" in sd and "encoder.down.1.block.3.conv1.weight" not in sd
    assert "decoder.up.0.block.3.conv1.weight" in sd and "decoder.up.2.block.3.conv1.weight" not in sd
    assert sd["decoder.conv_in.weight"].shape == (512, 13, 3, 3)  # ch * ch_mult[-1] = 512
    assert sd["decoder.up.4.upsample.conv.weight"].shape == (512, 512, 3, 3)
    assert "decoder.up.0.upsample.conv.weight" not in sd and "encoder.down.4.downsample.conv.weight" not in sd
    assert sd["quantize.embedding"].shape == (8192, 13)
    assert not any(".attn." in k for k in sd)  # attn_resolutions [5] never matches
