"""Bundles: export from a training checkpoint (EMA swap, hash, layout from the recipe), round trip, errors."""

import hashlib
import json

import pytest
import torch

from unif2ace import Unif2acePipeline
from unif2ace.config.base import to_dict
from unif2ace.model.builder import load_pretrained
from unif2ace.pipeline import export_bundle
from unif2ace.pipeline.bundle import read_bundle_info
from unif2ace.tokenizer.text import BPETokenizer
from unif2ace.training.checkpoint import CheckpointPayload, TrainingState, write_checkpoint

RECIPE = "data:\n  max_text_len: 32\n  num_image_tokens: 64\n  describe_prompt: Describe the face.\n"


@pytest.fixture(scope="module")
def checkpoint(tiny_bundle, tmp_path_factory):
    model = load_pretrained(tiny_bundle)
    state = model.state_dict()
    ema = {n: p.detach() + 0.5 for n, p in model.named_parameters()}  # clearly different from the raw weights
    payload = CheckpointPayload(
        model_state=state,
        model_config=to_dict(model.config),
        train_config_yaml=RECIPE,
        optimizer_state=None,
        state=TrainingState(global_step=7),
        ema_state=ema,
        tokenizer=BPETokenizer.load(tiny_bundle / "tokenizer"),
    )
    root = tmp_path_factory.mktemp("run") / "checkpoints"
    return write_checkpoint(root, payload), state, ema


def test_export_with_and_without_ema(checkpoint, tiny_bundle, tmp_path):
    ckpt, raw, ema = checkpoint
    out = export_bundle(ckpt, tiny_bundle / "vq", tmp_path / "b-ema", use_ema=True)
    info = read_bundle_info(out)
    assert info.model_hash == hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    assert (info.layout.max_text_len, info.layout.num_image_tokens, info.layout.image_size) == (32, 64, 64)
    assert info.layout.describe_prompt == "Describe the face." and info.provenance["ema"] is True
    assert info.features == {"clip": None, "face": None} and info.name == "b-ema"
    loaded = load_pretrained(out).state_dict()
    name = next(iter(ema))
    assert torch.equal(loaded[name], ema[name])
    buffers = [k for k in raw if k not in ema]
    assert all(torch.equal(loaded[k], raw[k]) for k in buffers)
    plain = export_bundle(ckpt.parent.parent, tiny_bundle / "vq", tmp_path / "b-raw", use_ema=False)  # run folder
    assert torch.equal(load_pretrained(plain).state_dict()[name], raw[name])
    assert read_bundle_info(plain).model_hash != info.model_hash
    pipe = Unif2acePipeline.from_pretrained(out, device="cpu")
    assert pipe.model_hash == info.model_hash and pipe.generate("A man", seed=0, steps=2).codes.shape == (1, 64)


def test_export_float16_storage_halves_the_file_and_loads_as_float32(checkpoint, tiny_bundle, tmp_path):
    ckpt, _, ema = checkpoint
    full = export_bundle(ckpt, tiny_bundle / "vq", tmp_path / "f32", use_ema=True)
    half = export_bundle(ckpt, tiny_bundle / "vq", tmp_path / "f16", use_ema=True, storage_dtype="float16")
    ratio = (half / "model.safetensors").stat().st_size / (full / "model.safetensors").stat().st_size
    assert 0.45 < ratio < 0.55
    assert read_bundle_info(half).provenance["storage_dtype"] == "float16"
    loaded = load_pretrained(half).state_dict()
    name = next(iter(ema))
    assert loaded[name].dtype == torch.float32  # cast back on load
    assert torch.equal(loaded[name], ema[name].half().float())
    pipe = Unif2acePipeline.from_pretrained(half, device="cpu")
    assert pipe.generate("A man", seed=0, steps=2).codes.shape == (1, 64)
    with pytest.raises(ValueError, match="storage dtype 'int8'"):
        export_bundle(ckpt, tiny_bundle / "vq", tmp_path / "bad", storage_dtype="int8")
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_export_cli_and_errors(checkpoint, tiny_bundle, tmp_path, capsys):
    from unif2ace.cli.main import main

    ckpt, _, _ = checkpoint
    code = main(["export", str(ckpt), "--vq", str(tiny_bundle / "vq"), "--out", str(tmp_path / "c"), "--ema",
                 "--steps", "6", "--guidance", "2.5", "--json"])  # fmt: skip
    assert code == 0
    info = json.loads(capsys.readouterr().out)
    assert info["recipe"]["steps"] == 6 and info["recipe"]["guidance_scale"] == 2.5 and info["provenance"]["ema"]
    assert main(["export", str(ckpt), "--vq", str(tmp_path / "novq"), "--out", str(tmp_path / "d")]) == 2
    assert "no image tokenizer" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--vq", str(tiny_bundle / "vq"), "--out", str(tmp_path / "d")]) == 2
    assert "no model.safetensors" in capsys.readouterr().err
