"""The data contract end to end: images -> ``unif2ace vq encode`` shards -> training; on-the-fly encoding agrees."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unif2ace.cli.main import main
from unif2ace.tokenizer.vq.checkpoint import save_tokenizer
from unif2ace.tokenizer.vq.config import ConvStackConfig, LFQConfig, VQModelConfig
from unif2ace.tokenizer.vq.model import VQModel
from unif2ace.training.run import build_batch_builder, run_training

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "training"))
from train_helpers import CAPTIONS, model_factory, tiny_config  # noqa: E402


def _faces(root: Path, n: int = 6) -> Path:
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"f{i}.png")
        records.append(
            {
                "id": f"f{i}",
                "image": f"images/f{i}.png",
                "caption": CAPTIONS[i % 4],
                "vqa": [{"q": "Smiling?", "a": "yes"}],
                "split": "test" if i == 5 else "train",
            }
        )
    (root / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root / "records.jsonl"


def test_encode_shards_then_train_and_preview(tmp_path):
    torch.manual_seed(0)
    tower = ConvStackConfig(
        ch=16, ch_mult=[1, 2, 2, 2], num_res_blocks=[1, 1, 1, 1], attn_resolutions=[], norm_groups=8
    )
    vq = VQModel(VQModelConfig(resolution=32, encoder=tower, decoder=tower, quantizer=LFQConfig(codebook_dim=5)))
    tok_dir = save_tokenizer(vq, tmp_path / "tok")
    records = _faces(tmp_path / "data")
    tokens = tmp_path / "tokens"
    assert (
        main(
            [
                "vq",
                "encode",
                str(tmp_path / "data" / "images"),
                "--tokenizer",
                str(tok_dir),
                "--out",
                str(tokens),
                "--shard-size",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    overrides = {
        "model.vocab.codebook_size": 32,
        "data.max_text_len": 64,
        "model.max_position_embeddings": 128,
        "train.preview_every": 2,
        "train.preview_faces": 1,
        "train.preview_steps": 2,
        "stages": [{"name": "m", "steps": 2, "lr": 1e-3}],
    }
    cfg = tiny_config(records, tokens, **overrides)
    builder = build_batch_builder(cfg)
    assert len(builder.dataset) == 5  # the test-split face is held out
    result = run_training(cfg, tmp_path / "run", model_factory=model_factory(), cpu=True)
    assert result.global_step == 2
    folder = tmp_path / "run" / "previews" / "step-0000002"
    assert (folder / "faces.png").is_file()  # decoded through the tokenizer named in provenance.json
    assert json.loads((folder / "captions.json").read_text())["captions"][0]["id"] == "f5"

    on_the_fly = tiny_config(
        records, "", **{**overrides, "data.encode_images": True, "data.vq_checkpoint": str(tok_dir)}
    )
    live = build_batch_builder(on_the_fly)
    for i in range(len(builder.dataset)):
        assert torch.equal(live.dataset[i].codes, builder.dataset[i].codes)
