"""Golden test: our tokenizer loaded from the upstream MAGVIT-v2 fixture reproduces its outputs (README tolerances)."""

from __future__ import annotations

import pytest
import torch

from unif2ace.compat.magvit import convert_magvitv2, load_magvitv2
from unif2ace.tokenizer.vq.checkpoint import load_tokenizer
from unif2ace.utils.io import load_tensors, read_json

pytestmark = pytest.mark.golden


@pytest.fixture(scope="module")
def magvit(fixtures_dir):
    torch.set_num_threads(2)  # the fixture was produced with 2 threads
    model = load_magvitv2(fixtures_dir / "magvit_state_dict.safetensors", fixtures_dir / "magvit_config.json")
    return model, load_tensors(fixtures_dir / "magvit_io.safetensors"), read_json(fixtures_dir / "magvit_config.json")


def test_config_is_inferred_from_the_fixture(magvit):
    model, io, cfg = magvit
    assert model.codebook_size == cfg["codebook_size"]
    assert model.downsample_factor == io["pixel_values"].shape[-1] // cfg["latent_hw"][0]


def test_codes_and_codebook_entries_are_exact(magvit):
    model, io, _ = magvit
    with torch.no_grad():
        codes = model.encode(io["pixel_values"])
        assert codes.dtype == torch.int64 and codes.shape == io["codes"].shape
        assert torch.equal(codes, io["codes"])
        assert torch.equal(model.quantize.get_codebook_entry(io["codes"]), io["codebook_entry_of_codes"])


def test_encoder_output_and_quantizer(magvit):
    model, io, _ = magvit
    with torch.no_grad():
        z = model.encode_latents(io["pixel_values"])
        torch.testing.assert_close(z, io["encoder_output"], atol=1e-5, rtol=0)
        out = model.quantize(io["encoder_output"])
    assert torch.equal(out.z, io["quantized_z"])
    torch.testing.assert_close(out.quantizer_loss, io["quantizer_loss"], rtol=1e-5, atol=0)
    torch.testing.assert_close(out.entropy_loss, io["entropy_loss"], rtol=1e-5, atol=0)


def test_decoded_within_1e4(magvit):
    model, io, _ = magvit
    with torch.no_grad():
        decoded = model.decode(io["codes"])
    torch.testing.assert_close(decoded, io["decoded"], atol=1e-4, rtol=0)


def test_convert_roundtrip_gives_identical_tokenizer(magvit, fixtures_dir, tmp_path):
    model, io, _ = magvit
    weights, config = fixtures_dir / "magvit_state_dict.safetensors", fixtures_dir / "magvit_config.json"
    out = convert_magvitv2(weights, tmp_path / "tok", config)
    reloaded = load_tokenizer(out)
    with torch.no_grad():
        assert torch.equal(reloaded.encode(io["pixel_values"]), io["codes"])
        torch.testing.assert_close(reloaded.decode(io["codes"]), model.decode(io["codes"]), atol=0, rtol=0)


def test_mismatched_config_is_refused(fixtures_dir, tmp_path):
    bad = read_json(fixtures_dir / "magvit_config.json")
    bad["encoder_kwargs"]["ch"] = 64
    path = tmp_path / "bad.json"
    path.write_text(__import__("json").dumps(bad))
    with pytest.raises(ValueError, match="do not match the config"):
        load_magvitv2(fixtures_dir / "magvit_state_dict.safetensors", path)
