"""dlib identity descriptor as an ImageEncoder: shapes, same face -> same vector, different faces apart,
no face -> zero row (the sequence MoE's "missing")."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unif2ace.model.interfaces import ImageEncoder

MINI = Path(__file__).resolve().parents[3] / "data" / "faces-mini" / "images"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("dlib") is None or importlib.util.find_spec("face_recognition_models") is None,
    reason="needs dlib: pip install --no-deps -r requirements/data-nodeps.txt",
)


def _tensor(path: Path) -> torch.Tensor:
    arr = np.asarray(Image.open(path).convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1  # (3, H, W)


def test_face_descriptors():
    from unif2ace.encoders import load_encoder

    enc = load_encoder("face")
    assert isinstance(enc, ImageEncoder) and enc.name == "face" and enc.dim == 128
    faces = torch.stack([_tensor(MINI / f"0-00000{i}.png") for i in (0, 1, 0)])
    feats = enc.encode(faces)
    assert feats.shape == (3, 1, 128)
    assert torch.equal(feats[0], feats[2]) and feats[0].norm() > 0.5
    assert (feats[0] - feats[1]).norm() > 0.3  # two synthetic identities
    shifted = torch.roll(faces[:1], shifts=2, dims=3)  # a 2-pixel shift keeps the identity
    assert (enc.encode(shifted)[0] - feats[0]).norm() < 0.3
    with pytest.raises(ValueError, match="unknown encoder kind|drop the path"):
        load_encoder("face", "somewhere")


def test_no_face_gives_zero_row_without_fallback():
    from unif2ace.encoders.face_id import FaceIdEncoder

    enc = FaceIdEncoder(fallback_box=False)
    blank = torch.zeros(1, 3, 64, 64)
    assert not enc.encode(blank).any()
