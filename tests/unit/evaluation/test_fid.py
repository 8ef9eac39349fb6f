"""FID / KID: known answers on synthetic features and on real faces through the shipped TF-Inception network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from unif2ace.evaluation.fid import fid_from_features, frechet_distance, kid

MINI = Path(__file__).resolve().parents[3] / "data" / "faces-mini"


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 9.0])
    # diagonal: |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    expected = 5.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0.0
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, abs=1e-9)


def test_fid_and_kid_on_synthetic_features():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 16))
    b = rng.normal(size=(400, 16))
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
    assert kid(a, a, num_subsets=10, subset_size=100) < 0.01
    shifted = a + 1.0  # mean shift of 1 in every dim -> FID = 16 exactly (same covariance)
    assert fid_from_features(a, shifted) == pytest.approx(16.0, rel=1e-6)
    assert fid_from_features(a, b) < 1.0 < fid_from_features(a, shifted)
    assert kid(a, shifted, num_subsets=10, subset_size=100) > 10 * abs(kid(a, b, num_subsets=10, subset_size=100))


def test_too_few_samples_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))


@pytest.mark.slow  # ~60 s on 2 busy cores (Inception at 299²)
def test_inception_fid_self_zero_and_blur_positive():
    from unif2ace.evaluation.fid import InceptionFeatures, find_inception_weights

    try:
        find_inception_weights()
    except FileNotFoundError as err:
        pytest.skip(str(err))

    paths = sorted((MINI / "images").glob("*.png"))[:12]
    faces = [Image.open(p).convert("RGB") for p in paths]
    blurred = [f.filter(ImageFilter.GaussianBlur(3)) for f in faces]
    net = InceptionFeatures(batch_size=12)
    fa, fb = net(faces), net(blurred)
    assert fa.shape == (12, 2048)
    assert np.allclose(net(faces[:3]), fa[:3], atol=1e-4)  # batch-independent
    assert fid_from_features(fa, fa) == pytest.approx(0.0, abs=1e-3)
    print(f"FID(12 faces, blurred) = {fid_from_features(fa, fb):.2f}")
    assert fid_from_features(fa, fb) > 20.0
    assert kid(fa, fb, num_subsets=20) > kid(fa, fa, num_subsets=20) + 0.01
