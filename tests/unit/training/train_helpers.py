"""Fabricated tiny datasets and configs for training tests (random codes + captions in a tmp folder)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from unif2ace.config.base import from_dict
from unif2ace.config.train import Unif2aceConfig
from unif2ace.utils.io import atomic_write_json, save_tensors

CAPTIONS = [
    "a young woman with long blond hair and a warm smile",
    "an older man with a grey beard wearing glasses",
    "a man with short black hair, neutral expression",
    "a smiling woman with curly red hair and earrings",
]


def make_dataset(
    root: Path, num_images: int = 12, num_tokens: int = 16, codebook: int = 64, seed: int = 0, shard_size: int = 5
) -> tuple[Path, Path]:
    """Write ``records.jsonl`` and a token folder (``tokens-*.safetensors`` + ``provenance.json``)."""
    root.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, codebook, (num_images, num_tokens), generator=gen, dtype=torch.int32)
    records, sources = [], []
    for i in range(num_images):
        image = root / "images" / f"face_{i:03d}.png"
        sources.append(str(image))
        vqa = (
            [
                {"q": f"What color is the hair of person {i}?", "a": ["blond", "grey", "black", "red"][i % 4]},
                {"q": "Is the person smiling?", "a": "yes" if i % 2 else "no"},
            ]
            if i % 3
            else []
        )
        records.append(
            {
                "id": f"img{i:03d}",
                "image": f"images/face_{i:03d}.png",
                "source": "ffhq",
                "caption": CAPTIONS[i % 4] + f" (#{i})",
                "attributes": {},
                "vqa": vqa,
                "split": "train",
            }
        )
    (root / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    tokens = root / "tokens"
    shards = []
    for k, start in enumerate(range(0, num_images, shard_size)):
        name = f"tokens-{k:05d}.safetensors"
        stop = min(start + shard_size, num_images)
        save_tensors(tokens / name, {"codes": codes[start:stop], "index": torch.arange(start, stop)})
        shards.append(name)
    atomic_write_json(tokens / "provenance.json", {"sources": sources, "shards": shards, "codebook_size": codebook})
    return root / "records.jsonl", tokens


# a small grouped token MoE for tiny_config(**{"model.token_moe": TOKEN_MOE})
TOKEN_MOE = {"enabled": True, "num_routed": 4, "top_k": 2, "routed_intermediate": 16, "shared_intermediate": 32}
# a text budget longer than the captions, so that rows are padded (tiny_config(**PADDED_ROWS))
PADDED_ROWS = {"data.max_text_len": 128, "model.max_position_embeddings": 192}


def tiny_config(records: Path, tokens: Path | str, **overrides) -> Unif2aceConfig:
    """A d=32, 2-layer model on 16 image tokens with a 24-token text budget."""
    data = {
        "model": {
            "hidden_size": 32,
            "num_layers": 2,
            "num_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
        },
        "data": {
            "records": str(records),
            "tokens": str(tokens),
            "max_text_len": 24,
            "num_image_tokens": 16,
            "t2i_per_batch": 2,
            "mmu_per_batch": 2,
        },
        "train": {"seed": 7, "checkpoint_every": 2, "log_every": 1, "progress_bar": False, "plot_every": 0},
        "stages": [{"name": "main", "steps": 4, "lr": 1e-3, "warmup_steps": 1}],
    }
    for key, value in overrides.items():
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return from_dict(Unif2aceConfig, data)


def model_factory():
    """``cfg -> model``: the package's transformer (what ``unif2ace train`` builds)."""
    from unif2ace.model import build_model

    return lambda cfg: build_model(cfg.model)
