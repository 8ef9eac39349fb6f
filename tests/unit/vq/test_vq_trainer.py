"""Tokenizer training: loss goes down on a handful of images; checkpoint -> resume reproduces the next step."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from unif2ace.config.base import from_dict
from unif2ace.tokenizer.vq import checkpoint as ckpt
from unif2ace.tokenizer.vq.config import VQConfig
from unif2ace.tokenizer.vq.data import ImageBatcher, collect_image_paths
from unif2ace.tokenizer.vq.losses import adversarial_factor, hinge_d_loss, structural_perceptual_loss
from unif2ace.tokenizer.vq.metrics import CodebookUsage, ms_ssim, psnr, ssim
from unif2ace.tokenizer.vq.trainer import VQTrainer


def _write_images(folder, n=8, size=48):
    """Face-like toy images: shared gradient background, a skin-coloured disc of varying place, size and shade."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    background = np.stack([xx * 4, yy * 4, np.full_like(xx, 60)], -1)
    for i in range(n):
        radius, (cx, cy) = rng.uniform(8, 16), rng.uniform(16, 32, 2)
        face = ((xx - cx) ** 2 + (yy - cy) ** 2 < radius**2)[..., None]
        arr = np.where(face, np.array([230, 180, 150]) * rng.uniform(0.7, 1.0), background).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img{i}.png")
    return folder


def _config(folder, **train):
    tower = {"ch": 32, "ch_mult": [1, 1, 2, 2], "num_res_blocks": [1, 1, 1, 1]}
    return from_dict(
        VQConfig,
        {
            "model": {"resolution": 32, "encoder": tower, "decoder": tower, "quantizer": {"codebook_dim": 6}},
            "data": {"sources": [str(folder)], "image_size": 32},
            "train": {
                "batch_size": 4,
                "max_steps": 30,
                "lr": 1e-3,
                "warmup_steps": 0,
                "ema_decay": 0.9,
                "log_every": 5,
                "sample_every": 0,
                "checkpoint_every": 100,
                **train,
            },
        },
    )


def _eval_l1(trainer):
    images = trainer.data.batch(0, 8)
    with torch.no_grad():
        trainer.model.eval()
        return (trainer.model(images).reconstruction - images).abs().mean().item()


def test_reconstruction_loss_decreases(tmp_path):
    trainer = VQTrainer(_config(_write_images(tmp_path / "imgs")), tmp_path / "run")
    before = _eval_l1(trainer)
    for _ in range(30):
        parts = trainer.train_step()
    assert _eval_l1(trainer) < 0.7 * before  # measured ~0.35-0.45 over seeds
    assert {"pixel", "perceptual", "quantizer", "entropy", "psnr", "lr", "grad_norm"} <= set(parts)
    stats = trainer.usage.stats()
    assert 0 < stats["usage"] <= 1 and stats["dead_codes"] == 64 * (1 - stats["usage"]) and stats["perplexity"] > 1


def test_bf16_autocast_trains_like_fp32_and_keeps_fp32_weights(tmp_path):
    folder = _write_images(tmp_path / "imgs")
    runs = {}
    for precision in ("fp32", "bf16"):
        trainer = VQTrainer(_config(folder, precision=precision), tmp_path / precision)
        first = trainer.train_step()
        for _ in range(29):
            trainer.train_step()
        runs[precision] = (first, _eval_l1(trainer), trainer)
    (f32, l1_32, _), (b16, l1_16, t16) = runs["fp32"], runs["bf16"]
    # same init and batch: the first step's losses agree to bf16 rounding; both runs learn comparably
    assert b16["pixel"] == pytest.approx(f32["pixel"], rel=0.02)
    assert b16["perceptual"] == pytest.approx(f32["perceptual"], rel=0.02)
    assert l1_16 == pytest.approx(l1_32, rel=0.25)
    assert all(p.dtype == torch.float32 for p in t16.model.parameters())
    assert all(v.dtype == torch.float32 for v in t16.ema.model.state_dict().values() if v.is_floating_point())


def test_precision_must_be_fp32_or_bf16(tmp_path):
    with pytest.raises(ValueError, match="train.precision"):
        _config(tmp_path, precision="fp16")


def test_decoder_stage_starts_from_weights_and_keeps_every_code(tmp_path):
    folder = _write_images(tmp_path / "imgs")
    stage1 = VQTrainer(_config(folder), tmp_path / "stage1")
    stage1.train(max_steps=4, progress=False)
    source = stage1.ema.model
    stage2 = VQTrainer(_config(folder, init_from=str(tmp_path / "stage1"), trainable="decoder"), tmp_path / "stage2")
    assert stage2.step == 0
    for name, value in stage2.model.state_dict().items():  # initialised from the run's latest (EMA) weights
        assert torch.equal(value, source.state_dict()[name]), name
    images = stage2.data.batch(0, 8)
    with torch.no_grad():
        codes_before = source.encode(images)
    decoder_before = {k: v.clone() for k, v in stage2.model.decoder.state_dict().items()}
    for _ in range(5):
        stage2.train_step()
    for model in (stage2.model, stage2.ema.model):
        for name, value in model.encoder.state_dict().items():
            assert torch.equal(value, source.encoder.state_dict()[name]), name
        with torch.no_grad():
            assert torch.equal(model.eval().encode(images), codes_before)
    changed = [k for k, v in stage2.model.decoder.state_dict().items() if not torch.equal(v, decoder_before[k])]
    assert len(changed) == len(decoder_before)  # every decoder tensor learns
    decoder_params = {id(p) for p in stage2.model.decoder.parameters()}
    assert all(id(p) in decoder_params for g in stage2.opt_g.param_groups for p in g["params"])


def test_decoder_stage_refuses_missing_or_mismatched_weights(tmp_path):
    folder = _write_images(tmp_path / "imgs")
    with pytest.raises(ValueError, match="--init-from"):
        VQTrainer(_config(folder, trainable="decoder"), tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="train.init_from"):
        VQTrainer(_config(folder, init_from=str(tmp_path / "nothing")), tmp_path / "run")
    VQTrainer(_config(folder), tmp_path / "small").train(max_steps=1, progress=False)
    other = _config(folder, init_from=str(tmp_path / "small"))
    other.model.quantizer.codebook_dim = 8
    with pytest.raises(ValueError, match="model.quantizer"):
        VQTrainer(other, tmp_path / "run")
    with pytest.raises(ValueError, match="train.trainable"):
        _config(folder, trainable="encoder")


def test_resume_reproduces_next_step_loss_with_gan(tmp_path):
    folder = _write_images(tmp_path / "imgs")
    overrides = ["loss.adversarial_weight=0.1", "loss.adversarial_start=1", "loss.adversarial_warmup=2"]
    cfg = __import__("unif2ace.config.base", fromlist=["apply_overrides"]).apply_overrides(_config(folder), overrides)
    first = VQTrainer(cfg, tmp_path / "run")
    first.train(max_steps=3, progress=False)  # saves step 3 at the end
    expected = first.train_step()
    resumed = VQTrainer(cfg, tmp_path / "other")
    resumed.load_checkpoint(tmp_path / "run")
    assert resumed.step == 3
    got = resumed.train_step()
    assert "g_adv" in got and "d_loss" in got
    for key in ("loss", "pixel", "perceptual", "quantizer", "entropy", "g_adv", "d_loss"):
        assert got[key] == expected[key], key
    for a, b in zip(first.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_run_folder_layout_and_pruning(tmp_path):
    cfg = _config(_write_images(tmp_path / "imgs", n=6), checkpoint_every=2, keep_last=2, sample_every=3, log_every=2)
    cfg.data.held_out = 2
    trainer = VQTrainer(cfg, tmp_path / "run")
    assert len(trainer.data) == 4 and len(trainer.held_out_paths) == 2
    trainer.train(max_steps=6, progress=False)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "run")]
    assert names == ["step-000000004", "step-000000006"]
    latest = ckpt.latest_checkpoint(tmp_path / "run")
    assert {
        "config.json",
        "model.safetensors",
        "online.safetensors",
        "optimizer.safetensors",
        "training_state.json",
    } <= {p.name for p in latest.iterdir()}
    assert not list(latest.glob(".*.tmp"))
    grid = Image.open(tmp_path / "run" / "samples" / "step-000000006.png")
    assert grid.size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)  # 2 held-out originals over 2 reconstructions
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4, 6] and all("perplexity" in r for r in lines)
    tok = ckpt.load_tokenizer(tmp_path / "run")  # a run folder resolves to its latest checkpoint (EMA weights)
    assert torch.equal(
        tok.state_dict()["encoder.conv_in.weight"], trainer.ema.model.state_dict()["encoder.conv_in.weight"]
    )


def test_batches_are_a_function_of_the_step_and_skip_bad_files(tmp_path):
    folder = _write_images(tmp_path / "imgs", n=5)
    (folder / "zz_broken.png").write_bytes(b"broken")
    paths = collect_image_paths([folder])
    a = ImageBatcher(paths, 32, seed=3)
    b = ImageBatcher(paths, 32, seed=3, cache=False)
    for step in (0, 4, 7):
        assert torch.equal(a.batch(step, 4), b.batch(step, 4))
    assert list(a.bad) == [str(folder / "zz_broken.png")] and "broken" in next(iter(a.bad))
    seen = {i for s in range(3) for i in a.indices_for_step(s, 2)}
    assert seen == set(range(6))  # one epoch visits every image once


def test_collect_paths_from_lists_and_records(tmp_path):
    folder = _write_images(tmp_path / "imgs", n=2)
    (tmp_path / "list.txt").write_text("imgs/img0.png\n# comment\n")
    (tmp_path / "recs.jsonl").write_text(json.dumps({"image": "imgs/img1.png", "caption": "x"}) + "\n")
    paths = collect_image_paths([tmp_path / "list.txt", tmp_path / "recs.jsonl", folder])
    assert [p.name for p in paths] == ["img0.png", "img1.png"]
    (tmp_path / "bad.jsonl").write_text('{"caption": "no image"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        collect_image_paths([tmp_path / "bad.jsonl"])


def test_metrics_and_losses():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2)) and torch.allclose(ms_ssim(x, x), torch.ones(2))
    noisy = (x + 0.5 * torch.randn_like(x)).clamp(-1, 1)
    assert (ssim(x, noisy) < 0.9).all() and (ms_ssim(x, noisy) < 1).all()
    a, b = torch.full((1, 3, 16, 16), 0.2 * 2 - 1), torch.full((1, 3, 16, 16), 0.6 * 2 - 1)  # constants 0.2, 0.6
    c1 = 0.01**2
    assert ssim(a, b).item() == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1), rel=1e-4)
    mse = ((noisy - x) ** 2).mean((1, 2, 3))
    torch.testing.assert_close(psnr(noisy, x), 10 * torch.log10(4 / mse))
    assert structural_perceptual_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert hinge_d_loss(torch.full((2,), 2.0), torch.full((2,), -2.0)).item() == 0.0
    assert [adversarial_factor(s, 10, 4) for s in (9, 10, 12, 20)] == [0.0, 0.25, 0.75, 1.0]
    usage = CodebookUsage(8, window=2)
    for codes in (torch.tensor([0, 0]), torch.tensor([1, 2]), torch.tensor([3, 3])):
        usage.update(codes)
    stats = usage.stats()  # window keeps the last two updates: codes {1, 2, 3, 3}
    assert stats["usage"] == 3 / 8 and stats["dead_codes"] == 5
    assert stats["perplexity"] == pytest.approx(np.exp(-(0.25 * np.log(0.25) * 2 + 0.5 * np.log(0.5))))
