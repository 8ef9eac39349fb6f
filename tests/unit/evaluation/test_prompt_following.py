"""benchmarks/prompt_following.py: how per-attribute and pooled prompt-following rates are aggregated."""

from __future__ import annotations

import math

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("prompt_following.py")


def test_rates_per_attribute_mean_and_pooled(bench):
    hits = [
        {"gender": True, "smile": False, "face_shape": False},
        {"gender": True, "smile": True, "eyeglasses": True},
        {"gender": False, "beard": True},
        {},
    ]
    out = bench._accuracy(hits)
    assert out["gender"] == pytest.approx(2 / 3) and out["gender_n"] == 3
    assert out["smile"] == 0.5 and out["eyeglasses"] == 1.0 and out["beard"] == 1.0
    assert out["binary_mean"] == pytest.approx((2 / 3 + 0.5 + 1 + 1) / 4)  # each attribute weighs the same
    assert out["binary_pooled"] == pytest.approx(5 / 7)  # each check weighs the same
    assert out["all_attributes"] == pytest.approx(5 / 8)  # non-binary attributes count here only


def test_no_judgeable_attribute_gives_nan_not_an_error(bench):
    out = bench._accuracy([{}, {"face_shape": True}])
    assert "gender" not in out and math.isnan(out["binary_mean"]) and math.isnan(out["binary_pooled"])
    assert out["all_attributes"] == 1.0


def test_rates_split_by_the_requested_value(bench):
    hits = [{"smile": True}, {"smile": False}, {"smile": True}, {"gender": True}]
    wanted = [{"smile": True}, {"smile": False}, {"smile": False}, {"gender": "female", "smile": True}]
    out = bench._accuracy(hits, wanted)
    assert out["smile_by_value"] == {"False": [0.5, 2], "True": [1.0, 1]}  # 4th image: smile not judgeable
    assert out["gender_by_value"] == {"female": [1.0, 1]}
    assert "smile_by_value" not in bench._accuracy(hits)


def test_row_keys_name_only_the_swept_settings(bench):
    assert bench._row_key(2.0, {"steps": (None, [None]), "temperature": (None, [None])}) == "2.0"
    key = bench._row_key(
        1.5, {"steps": (32, [16, 32]), "schedule": ("cosine", ["cosine"]), "temperature": (2.0, [1.0, 2.0])}
    )
    assert key == "1.5|steps=32|temperature=2.0"
