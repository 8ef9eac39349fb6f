"""Previews (MaskGIT faces + greedy captions from the training layouts), metrics JSONL and the loss-curve PNG."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from train_helpers import make_dataset, model_factory, tiny_config

from unif2ace.training.metrics import MetricsLogger, plot_loss_curve, read_metrics
from unif2ace.training.preview import make_preview_fn
from unif2ace.training.run import build_batch_builder, run_training


class FakeDecoder(nn.Module):
    """Codes -> a flat-colour 8x8 image per row (stands in for the VQ decoder)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def decode(self, codes):
        shade = codes.float().mean(1) / 64 * 2 - 1  # (B,)
        return (shade[:, None, None, None] * self.scale).expand(-1, 3, 8, 8)


def test_preview_writes_faces_and_captions(tmp_path):
    records, tokens = make_dataset(tmp_path)
    cfg = tiny_config(records, tokens, **{"data.max_text_len": 48, "model.max_position_embeddings": 80})
    builder = build_batch_builder(cfg)
    model = model_factory()(cfg).eval()
    faces = [builder.dataset[i] for i in range(2)]
    fn = make_preview_fn(
        builder,
        ["a smiling woman", "an old man", "a bald man"],
        faces,
        steps=3,
        max_new_tokens=5,
        decoder=FakeDecoder(),
    )
    with torch.no_grad():
        folder = fn(model, 7, tmp_path / "previews")
        again = json.loads((fn(model, 7, tmp_path / "again") / "captions.json").read_text())
    assert folder.name == "step-0000007" and (folder / "faces.png").stat().st_size > 0
    data = json.loads((folder / "captions.json").read_text())
    assert [c["id"] for c in data["captions"]] == ["img000", "img001"]
    assert data == again  # fixed seed: previews are comparable across steps
    assert all(isinstance(c["generated"], str) for c in data["captions"])


def test_trainer_calls_the_default_preview(tmp_path):
    records, tokens = make_dataset(tmp_path)
    cfg = tiny_config(
        records,
        tokens,
        **{
            "train.preview_every": 2,
            "train.preview_faces": 1,
            "train.preview_steps": 2,
            "stages": [{"name": "m", "steps": 2, "lr": 1e-3}],
        },
    )
    run_training(cfg, tmp_path / "run", model_factory=model_factory(), cpu=True)
    folder = tmp_path / "run" / "previews" / "step-0000002"
    assert (folder / "captions.json").is_file() and (folder / "codes.safetensors").is_file()


def test_metrics_resume_drops_steps_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLogger(path)
    for step in range(1, 6):
        log.log(step, {"loss/total": 10.0 / step, "loss/mmu": 1.0})
    with open(path, "a") as fh:
        fh.write('{"step": 6, "loss/tot')  # torn line from a killed run
    MetricsLogger(path, resume_step=3)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    pytest.importorskip("matplotlib")
    png = plot_loss_curve(path, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_loss_curve(tmp_path / "empty.jsonl", tmp_path / "x.png") is None


def test_optional_trackers_fail_with_an_install_hint(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ValueError, match="pip install tensorboard"):
            MetricsLogger(tmp_path / "m.jsonl", tensorboard_dir=tmp_path / "tb")
    else:
        logger = MetricsLogger(tmp_path / "m.jsonl", tensorboard_dir=tmp_path / "tb")
        logger.log(1, {"loss/total": 1.0})
        logger.close()
        assert any((tmp_path / "tb").iterdir())
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(ValueError, match="pip install wandb"):
            MetricsLogger(tmp_path / "m.jsonl", wandb_project="unif2ace")
