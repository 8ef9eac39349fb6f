"""``unif2ace vq`` commands end to end on a tiny tokenizer: train, reconstruct (side-by-side PNG), encode shards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from unif2ace.cli.main import main
from unif2ace.tokenizer.vq.checkpoint import load_tokenizer, save_tokenizer
from unif2ace.tokenizer.vq.config import ConvStackConfig, LFQConfig, VQModelConfig
from unif2ace.tokenizer.vq.model import VQModel
from unif2ace.utils.io import load_tensors


@pytest.fixture()
def tokenizer_dir(tmp_path):
    torch.manual_seed(0)
    tower = ConvStackConfig(
        ch=16, ch_mult=[1, 2, 2, 2], num_res_blocks=[1, 1, 1, 1], attn_resolutions=[], norm_groups=8
    )
    model = VQModel(VQModelConfig(resolution=32, encoder=tower, decoder=tower, quantizer=LFQConfig(codebook_dim=5)))
    return save_tokenizer(model, tmp_path / "tok")


def _image(path, size=(40, 36), seed=0):
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def test_reconstruct_writes_side_by_side_png(tokenizer_dir, tmp_path, capsys):
    src = _image(tmp_path / "face.png")
    out = tmp_path / "out" / "recon.png"
    assert main(["vq", "reconstruct", str(src), "--tokenizer", str(tokenizer_dir), "--out", str(out)]) == 0
    grid = Image.open(out)
    assert grid.size == (64, 32)  # original | reconstruction, each 32x32
    model = load_tokenizer(tokenizer_dir)
    from unif2ace.utils.images import load_image, to_tensor

    original = load_image(src, 32)
    assert np.array_equal(np.asarray(grid)[:, :32], np.asarray(original))
    with torch.no_grad():
        recon = model.decode(model.encode(to_tensor(original)[None])).clamp(-1, 1)[0]
    expected = ((recon + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(grid)[:, 32:], expected)
    assert "PSNR" in capsys.readouterr().out


def test_reconstruct_bad_image_is_a_one_line_error(tokenizer_dir, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert (
        main(["vq", "reconstruct", str(bad), "--tokenizer", str(tokenizer_dir), "--out", str(tmp_path / "x.png")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert "bad.png" in err and "\n" not in err


def test_encode_folder_to_shards_with_provenance(tokenizer_dir, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        _image(folder / f"{i}.png", seed=i)
    (folder / "broken.jpg").write_bytes(b"broken")
    out = tmp_path / "tokens"
    args = [
        "vq",
        "encode",
        str(folder),
        "--tokenizer",
        str(tokenizer_dir),
        "--out",
        str(out),
        "--shard-size",
        "3",
        "--batch-size",
        "2",
        "--no-progress",
    ]
    assert main(args) == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["num_images"] == 5 and prov["shards"] == ["tokens-00000.safetensors", "tokens-00001.safetensors"]
    assert prov["latent_shape"] == [4, 4] and prov["codebook_size"] == 32 and prov["image_size"] == 32
    assert len(prov["tokenizer"]["weights_sha256"]) == 64
    assert [s["path"].rsplit("/", 1)[-1] for s in prov["skipped"]] == ["broken.jpg"]
    shards = [load_tensors(out / name) for name in prov["shards"]]
    codes = torch.cat([s["codes"] for s in shards])
    assert codes.shape == (5, 16) and torch.equal(torch.cat([s["index"] for s in shards]), torch.arange(5))
    model = load_tokenizer(tokenizer_dir)
    from unif2ace.utils.images import load_image, to_tensor

    first = to_tensor(load_image(prov["sources"][0], 32))[None]
    assert torch.equal(codes[0].long(), model.encode(first)[0])


def test_train_command_runs_and_resumes(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        _image(folder / f"{i}.png", size=(48, 48), seed=i)
    cfg = tmp_path / "c.yaml"
    tower = "{ch: 16, ch_mult: [1, 2, 2, 2], num_res_blocks: [1, 1, 1, 1], attn_resolutions: [], norm_groups: 8}"
    cfg.write_text(
        f"model:\n  resolution: 32\n  encoder: {tower}\n  decoder: {tower}\n  quantizer: {{codebook_dim: 5}}\n"
        "data: {image_size: 32}\ntrain: {batch_size: 2, max_steps: 2, log_every: 1, sample_every: 0}\n"
    )
    run = tmp_path / "run"
    base = ["vq", "train", "--config", str(cfg), "--data", str(folder), "--out", str(run), "--no-progress"]
    assert main(base) == 0
    assert main([*base, "--resume", "train.max_steps=3"]) == 0
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert main(["vq", "train", "--config", "nope_config"]) == 2
    stage2 = [*base[:6], "--out", str(tmp_path / "dec"), "--no-progress"]
    assert main([*stage2, "train.trainable=decoder"]) == 2  # no weights to start from: refused before any work
    assert not (tmp_path / "dec").exists()
    assert main([*stage2, "--init-from", str(run), "train.trainable=decoder"]) == 0
    first = load_tokenizer(run)
    second = load_tokenizer(tmp_path / "dec")
    assert torch.equal(first.encoder.conv_in.weight, second.encoder.conv_in.weight)
    assert not torch.equal(first.decoder.conv_out.weight, second.decoder.conv_out.weight)


def test_shipped_configs_load():
    from unif2ace.cli.vq import resolve_config_path
    from unif2ace.config.base import load_config
    from unif2ace.tokenizer.vq.config import VQConfig

    c64 = load_config(VQConfig, resolve_config_path("vq_faces_64"))
    c128 = load_config(VQConfig, resolve_config_path("vq_faces_128"))
    assert (c64.data.image_size, c64.model.downsample_factor, c64.model.latent_size) == (64, 8, 8)
    assert (c128.data.image_size, c128.model.downsample_factor, c128.model.latent_size) == (128, 16, 8)
    c8k = load_config(VQConfig, resolve_config_path("vq_faces_64_8k"))  # base: vq_faces_64 + its stated changes
    assert (c8k.model.quantizer.codebook_dim, c8k.model.decoder.num_res_blocks, c8k.train.max_steps) == (
        13,
        [1, 1, 2, 2],
        6000,
    )
    assert (c8k.model.encoder, c8k.loss, c8k.data) == (c64.model.encoder, c64.loss, c64.data)
    w48 = load_config(VQConfig, resolve_config_path("vq_faces_64_8k_w48"))
    assert (w48.model.decoder.ch, w48.model.decoder.num_res_blocks, w48.train.precision) == (48, [1, 1, 2, 2], "bf16")
    assert (w48.model.encoder, w48.model.quantizer, w48.loss) == (c8k.model.encoder, c8k.model.quantizer, c8k.loss)
    c128k = load_config(VQConfig, resolve_config_path("vq_faces_128_8k"))
    assert (c128k.model.latent_size, c128k.model.quantizer.codebook_dim, c128k.model.decoder.ch) == (8, 13, 24)
    assert (c128k.model.encoder, c128k.loss, c128k.data) == (c128.model.encoder, c128.loss, c128.data)
    for stage1, name in ((w48, "vq_faces_64_8k_w48_l2"), (c128k, "vq_faces_128_8k_l2")):  # stage 2: same model, L2
        stage2 = load_config(VQConfig, resolve_config_path(name))
        assert (stage2.model, stage2.data, stage2.train.precision) == (stage1.model, stage1.data, "bf16")
        assert (stage2.loss.recon, stage2.loss.recon_weight, stage2.loss.perceptual_weight) == ("l2", 10.0, 0.1)
        assert (stage2.train.trainable, stage2.train.lr, stage2.train.init_from) == ("all", 2.5e-4, "")
    assert (w48.loss.entropy_weight, stage2.loss.entropy_weight) == (1.0, 4.0)  # 128 px: usage kept above 50 %


def test_unknown_vq_config_lists_the_shipped_tokenizer_configs_only():
    from unif2ace.cli.vq import resolve_config_path

    with pytest.raises(FileNotFoundError, match="config not found: vq_nope") as err:
        resolve_config_path("vq_nope")
    assert all(f"{name}," in str(err.value) or f"{name})" in str(err.value) for name in ("vq_faces_64", "vq_faces_128"))
    assert "train_" not in str(err.value)
