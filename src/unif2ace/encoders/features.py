"""``unif2ace data features``: run a frozen encoder over a records file into a feature cache keyed by record id.

The cache is a :class:`unif2ace.model.encoders.FeatureCache` (one safetensors file, the kind in its metadata),
which a training config names under ``data.features.<kind>``; the sequence-MoE expert of that kind then reads
``(B, T, E)`` features per batch (zeros for records without features).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from unif2ace.model.encoders import FeatureCache


def _images(records_file: Path, records: list, size: int) -> Iterator[tuple[str, Tensor]]:
    from unif2ace.utils.images import load_image

    for rec in records:
        img = load_image(records_file.parent / rec.image).convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), resample=4)  # 4 = BOX (area averaging)
        arr = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float()  # (3, S, S)
        yield rec.id, arr / 127.5 - 1.0


def build_feature_cache(
    records_file: str | Path,
    kind: str,
    out: str | Path,
    weights: str | Path | None = None,
    size: int = 128,
    batch_size: int = 32,
    progress: bool = True,
) -> FeatureCache:
    """Encode every record's image with the ``kind`` encoder and save the cache to ``out``.

    Args:
        records_file: records (image paths relative to its folder).
        kind: ``clip`` or ``face`` (see :func:`unif2ace.encoders.load_encoder`).
        out: ``.safetensors`` file to write (atomically).
        weights: ``clip`` weights folder (default: the shipped encoder).
        size: images are resized to ``size x size`` first (one batch needs one size).
        batch_size: images per encoder call.
        progress: show a progress bar.

    Returns:
        The cache (also saved).

    Raises:
        ValueError: an unknown kind, or the records file has no records.
    """
    from tqdm import tqdm

    from unif2ace.data.records import read_records
    from unif2ace.encoders import load_encoder

    records_file = Path(records_file)
    records = read_records(records_file)
    if not records:
        raise ValueError(f"{records_file}: no records to encode")
    encoder = load_encoder(kind, weights)
    items = tqdm(
        _images(records_file, records, size), total=len(records), desc=f"features:{kind}", disable=not progress
    )
    cache = FeatureCache.from_encoder(encoder, items, batch_size=batch_size)
    cache.save(out)
    return cache
