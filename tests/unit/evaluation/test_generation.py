"""Generation metrics: prompt attributes, pixel change in/out of a region, identity distance, alignment diagonal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import unif2ace.evaluation.generation as generation
from unif2ace.evaluation.generation import alignment_scores, identity_distance, pixel_change, prompt_attributes

MINI = Path(__file__).resolve().parents[3] / "data" / "faces-mini" / "images"


def test_prompt_attributes_reads_unambiguous_values():
    attrs = prompt_attributes("A young woman with long black hair, smiling, wearing glasses.")
    assert attrs["gender"] == "female" and attrs["hair_color"] == "black" and attrs["eyeglasses"] is True


def test_pixel_change_inside_vs_outside():
    before = Image.new("RGB", (8, 8), (100, 100, 100))
    arr = np.full((8, 8, 3), 100, np.uint8)
    arr[:4] = 160  # top half changed by 60
    mask = np.zeros((8, 8), np.uint8)
    mask[:4] = 255
    inside, outside = pixel_change(before, Image.fromarray(arr), Image.fromarray(mask, "L"))
    assert inside == pytest.approx(60.0) and outside == pytest.approx(0.0)


def test_identity_distance_same_face_zero_other_face_larger():
    faces = pytest.importorskip("unif2ace.data.faces")
    try:
        analyzer = faces.FaceAnalyzer()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    a, b = (Image.open(p).convert("RGB").resize((256, 256)) for p in sorted(MINI.glob("*.png"))[:2])
    assert identity_distance(analyzer, a, a) == pytest.approx(0.0, abs=1e-5)
    assert identity_distance(analyzer, a, b) > 0.2
    assert identity_distance(analyzer, a, Image.new("RGB", (256, 256))) is None  # no face -> undefined


def test_alignment_takes_each_image_with_its_own_prompt(monkeypatch):
    class Encoder:
        def score(self, pixels, texts):
            assert pixels.shape == (2, 3, 8, 8) and float(pixels.min()) >= -1.0
            return torch.tensor([[0.9, 0.1], [0.2, 0.7]])

    monkeypatch.setattr(generation, "_semantic_encoder", lambda: Encoder())
    scores, why = alignment_scores([Image.new("RGB", (8, 8))] * 2, ["a", "b"])
    assert scores == pytest.approx([0.9, 0.7]) and why == ""


def test_alignment_missing_encoder_is_a_skip_line(monkeypatch):
    def missing():
        raise FileNotFoundError("no weights")

    monkeypatch.setattr(generation, "_semantic_encoder", missing)
    scores, why = alignment_scores([Image.new("RGB", (8, 8))], ["a"])
    assert scores is None and "skipped" in why and "no weights" in why
