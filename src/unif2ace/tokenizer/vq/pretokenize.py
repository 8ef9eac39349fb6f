"""Encode an image collection into token shards with provenance (the artefact the transformer trains on).

Output folder::

    OUT/tokens-00000.safetensors   "codes" (N, h*w) int32 row-major codes, "index" (N,) int64 positions in sources
    OUT/provenance.json            tokenizer (folder, weights SHA-256, config), image size, latent grid, shards,
                                   every source path in row order, skipped files with the reason

Files that cannot be used (corrupt, tiny, huge...) are listed under ``skipped`` and never stop the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from unif2ace.config.base import to_dict
from unif2ace.tokenizer.vq.model import VQModel
from unif2ace.utils.images import load_image
from unif2ace.utils.io import atomic_write_json, save_tensors


@dataclass
class EncodeResult:
    """Summary of an encoding run."""

    out_dir: Path
    num_encoded: int = 0
    shards: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _load_batch(paths: list[Path], size: int, skipped: list[dict[str, str]]) -> tuple[list[int], torch.Tensor | None]:
    kept, arrays = [], []
    for i, path in enumerate(paths):
        try:
            arrays.append(np.asarray(load_image(path, size), dtype=np.uint8))
            kept.append(i)
        except (ValueError, FileNotFoundError) as err:
            skipped.append({"path": str(path), "reason": str(err).splitlines()[0]})
    if not arrays:
        return kept, None
    return kept, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # (B, 3, S, S)


@torch.no_grad()
def encode_to_shards(
    model: VQModel,
    paths: list[Path],
    out_dir: str | Path,
    image_size: int,
    tokenizer_info: dict,
    batch_size: int = 32,
    shard_size: int = 8192,
    progress: bool = True,
) -> EncodeResult:
    """Encode ``paths`` with ``model`` into ``tokens-*.safetensors`` shards plus ``provenance.json``.

    Args:
        model: tokenizer in eval mode (its device is used).
        paths: images, in the order rows are written.
        out_dir: destination folder.
        image_size: square size images are resized / centre-cropped to.
        tokenizer_info: provenance of the tokenizer (folder, weights hash...).
        batch_size: images per forward pass.
        shard_size: rows per shard.
        progress: show a progress bar.

    Returns:
        :class:`EncodeResult`.
    """
    if image_size % model.downsample_factor:
        raise ValueError(
            f"image size {image_size} must be a multiple of the tokenizer's factor {model.downsample_factor}"
        )
    out_dir = Path(out_dir)
    device = next(model.parameters()).device
    code_dtype = torch.int32 if model.codebook_size <= 2**31 else torch.int64
    result = EncodeResult(out_dir=out_dir)
    sources: list[str] = []
    pending_codes: list[torch.Tensor] = []
    pending_index: list[int] = []

    def flush() -> None:
        if not pending_index:
            return
        name = f"tokens-{len(result.shards):05d}.safetensors"
        codes = torch.cat(pending_codes).to(code_dtype)
        save_tensors(out_dir / name, {"codes": codes, "index": torch.tensor(pending_index, dtype=torch.int64)})
        result.shards.append(name)
        pending_codes.clear()
        pending_index.clear()

    for start in tqdm(range(0, len(paths), batch_size), disable=not progress, desc="vq encode", unit="batch"):
        chunk = paths[start : start + batch_size]
        kept, images = _load_batch(chunk, image_size, result.skipped)
        if images is None:
            continue
        codes = model.encode(images.to(device)).cpu()  # (b, h*w)
        for row, i in enumerate(kept):
            pending_codes.append(codes[row : row + 1])
            pending_index.append(len(sources))
            sources.append(str(chunk[i]))
            if len(pending_index) == shard_size:
                flush()
    flush()
    result.num_encoded = len(sources)
    side = image_size // model.downsample_factor
    atomic_write_json(
        out_dir / "provenance.json",
        {
            "tool": "unif2ace vq encode",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tokenizer": {**tokenizer_info, "model": to_dict(model.config)},
            "image_size": image_size,
            "latent_shape": [side, side],
            "codebook_size": model.codebook_size,
            "num_images": len(sources),
            "shards": result.shards,
            "sources": sources,
            "skipped": result.skipped,
        },
    )
    return result
