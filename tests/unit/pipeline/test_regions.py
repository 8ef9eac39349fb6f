"""Region masks from landmarks, token dilation and user masks (known answers on a synthetic landmark set)."""

import numpy as np
import pytest
import torch

from unif2ace.pipeline.regions import REGIONS, check_regions, mask_from_input, region_pixel_mask, token_mask


def _landmarks(size=256):
    """A frontal face centred in a ``size`` image built from the iBUG layout's geometry (not a real detection)."""
    s = size / 256
    jaw = [(60 + 136 * i / 16, 120 + 70 * np.sin(np.pi * i / 16)) for i in range(17)]
    brows = [(80 + 10 * i, 100) for i in range(5)] + [(136 + 10 * i, 100) for i in range(5)]
    nose = [(128, 110 + 8 * i) for i in range(4)] + [(116 + 6 * i, 146) for i in range(5)]
    eye = lambda cx: [(cx - 12, 120), (cx - 6, 116), (cx + 6, 116), (cx + 12, 120), (cx + 6, 124), (cx - 6, 124)]
    mouth_outer = [(128 + 24 * np.cos(a), 172 + 10 * np.sin(a)) for a in np.linspace(np.pi, 3 * np.pi, 12, False)]
    mouth_inner = [(128 + 14 * np.cos(a), 172 + 4 * np.sin(a)) for a in np.linspace(np.pi, 3 * np.pi, 8, False)]
    pts = jaw + brows + nose + eye(100) + eye(156) + mouth_outer + mouth_inner
    lm = np.array(pts, dtype=np.float64) * s
    assert lm.shape == (68, 2)
    return lm


def test_regions_are_where_they_belong():
    lm = _landmarks()
    masks = {r: region_pixel_mask(lm, 256, [r]) for r in REGIONS}
    assert all(m.any() for m in masks.values())
    assert masks["eyes"][120, 100] and masks["eyes"][120, 156] and not masks["eyes"][172, 128]
    assert masks["mouth"][172, 128] and not masks["mouth"][120, 100]
    assert masks["nose"][130, 128] and masks["eyebrows"][100, 90]
    assert masks["skin"][150, 90] and not masks["skin"][120, 100] and not masks["skin"][172, 128]
    assert masks["background"][5, 5] and not masks["background"][150, 128]
    assert masks["hair"][40, 128] and not masks["hair"][150, 128]
    for a, b in [("skin", "eyes"), ("skin", "mouth"), ("background", "hair"), ("background", "skin"), ("hair", "skin")]:
        assert not (masks[a] & masks[b]).any(), (a, b)
    union = region_pixel_mask(lm, 256, ["eyes", "mouth"])
    assert np.array_equal(union, masks["eyes"] | masks["mouth"])


def test_token_mask_dilates_to_touched_cells():
    mask = np.zeros((64, 64), dtype=bool)
    mask[8, 8] = True  # one pixel at the corner of cells (1, 1)
    mask[30:34, 40] = True  # crosses the border of rows 3 and 4 in column 5
    tokens = token_mask(mask, 8).reshape(8, 8)
    expected = np.zeros((8, 8), dtype=bool)
    expected[1, 1] = expected[3, 5] = expected[4, 5] = True
    assert np.array_equal(tokens, expected)
    with pytest.raises(ValueError, match="divisible by 8"):
        token_mask(np.zeros((60, 60), dtype=bool), 8)


def test_mask_inputs():
    arr = np.zeros((40, 50), dtype=np.uint8)
    arr[:10] = 255
    got = mask_from_input(arr, (50, 40))
    assert got.shape == (40, 50) and got[:10].all() and not got[10:].any()
    assert np.array_equal(mask_from_input(arr > 0, (50, 40)), got)
    assert np.array_equal(mask_from_input(torch.from_numpy(arr / 255.0), (50, 40)), got)
    from PIL import Image

    assert np.array_equal(mask_from_input(Image.fromarray(arr), (50, 40)), got)
    with pytest.raises(ValueError, match="mask is 50x40 but the image is 64x64"):
        mask_from_input(arr, (64, 64))


def test_check_regions():
    assert check_regions("Hair") == ["hair"] and check_regions(["eyes", "nose"]) == ["eyes", "nose"]
    for bad in ("tail", [], ["eyes", 3], None):
        with pytest.raises(ValueError, match="region"):
            check_regions(bad)
