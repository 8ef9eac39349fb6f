"""Face-region masks for editing: dlib 68 landmarks -> pixel masks -> token masks on the VQ grid.

Landmark indices follow iBUG 300-W (0-based; see :mod:`unif2ace.data.annotation.landmarks`): jaw 0-16, brows
17-26, nose 27-35, eyes 36-47, outer lips 48-59. Regions are drawn as polygons / ellipses scaled by the
inter-ocular distance ``d`` and the face width ``w`` (jaw end to jaw end), so they follow the face's size:

* ``eyes``: each eye contour grown 1.7x about its centre (lids and lashes);
* ``eyebrows``: each brow line thickened by ``0.16 d`` up and down;
* ``nose``: hull of the nose points grown 1.25x; ``mouth``: the outer-lip contour grown 1.25x;
* ``skin``: the face (jaw line + brows lifted by ``0.6 d`` for the forehead) minus eyes, brows and mouth;
* ``ears``: ellipses beside jaw points 1-3 and 13-15; ``hair``: a head ellipse above mid-jaw minus face and ears;
* ``accessories``: where glasses, earrings and hats sit (band from temple to temple between the brows and the
  nose bridge, ear lobes, the crown above the forehead);
* ``background``: everything outside face, hair, ears and the neck.

These are geometric approximations [INF]: no face parser is used (none ships offline with our data tools). A pixel
mask becomes a token mask by marking every token whose ``f x f`` pixel cell touches the mask (dilation to the token
grid), so the edit covers the whole region.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["REGIONS", "check_regions", "mask_from_input", "region_pixel_mask", "token_mask"]

REGIONS = ("hair", "eyes", "eyebrows", "nose", "mouth", "skin", "ears", "background", "accessories")


def check_regions(region: Any) -> list[str]:
    """A region name or list of names -> checked list.

    Raises:
        ValueError: unknown name, empty list or wrong type (lists the valid names).
    """
    names = [region] if isinstance(region, str) else region
    if not isinstance(names, (list, tuple)) or not names:
        raise ValueError(f"region must be a name or a non-empty list of names from: {', '.join(REGIONS)}")
    out = []
    for name in names:
        if not isinstance(name, str) or name.strip().lower() not in REGIONS:
            raise ValueError(f"unknown region {name!r}; choose from: {', '.join(REGIONS)}")
        out.append(name.strip().lower())
    return out


def _grow(points: np.ndarray, factor: float) -> np.ndarray:
    centre = points.mean(0)
    return centre + (points - centre) * factor


def _draw(size: int, polygons: list[np.ndarray] = (), ellipses: list[tuple[float, ...]] = ()) -> np.ndarray:
    """Boolean ``(size, size)`` mask of filled polygons (``(K, 2)`` xy) and ellipses ``(x0, y0, x1, y1)``."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        draw.polygon([(float(x), float(y)) for x, y in poly], fill=255)
    for box in ellipses:
        draw.ellipse([float(v) for v in box], fill=255)
    return np.asarray(canvas) > 0


def _parts(lm: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Every region's mask at ``size`` px from ``(68, 2)`` landmarks in that pixel frame."""
    eye_r, eye_l = lm[36:42], lm[42:48]
    d = max(float(np.linalg.norm(eye_r.mean(0) - eye_l.mean(0))), 1.0)
    w = max(float(np.linalg.norm(lm[16] - lm[0])), 1.0)
    up = np.array([0.0, -1.0])
    brows = [lm[17:22], lm[22:27]]
    forehead = lm[26:16:-1] + up * 0.6 * d  # brow points 26 .. 17 lifted
    face = _draw(size, [np.concatenate([lm[0:17], forehead])])
    eyes = _draw(size, [_grow(eye_r, 1.7), _grow(eye_l, 1.7)])
    brow_polys = [np.concatenate([b + up * 0.16 * d, (b - up * 0.16 * d)[::-1]]) for b in brows]
    eyebrows = _draw(size, brow_polys)
    nose_pts = lm[27:36]
    nose = _draw(size, [_grow(nose_pts[[0, 4, 5, 6, 7, 8]], 1.25), _grow(lm[[27, 31, 33, 35]], 1.25)])
    mouth = _draw(size, [_grow(lm[48:60], 1.25)])
    skin = face & ~eyes & ~eyebrows & ~mouth
    ear_boxes = []
    for side, idx in ((-1.0, [1, 2, 3]), (1.0, [13, 14, 15])):
        centre = lm[idx].mean(0) + np.array([side * 0.1 * w, -0.05 * w])
        ear_boxes.append((centre[0] - 0.09 * w, centre[1] - 0.2 * w, centre[0] + 0.09 * w, centre[1] + 0.2 * w))
    ears = _draw(size, ellipses=ear_boxes) & ~face
    cx, top = float(lm[[0, 16], 0].mean()), float(forehead[:, 1].min())
    head = _draw(size, ellipses=[(cx - 0.78 * w, top - 0.55 * w, cx + 0.78 * w, float(lm[8, 1]) + 0.1 * w)])
    rows = np.arange(size)[:, None] <= float(lm[4, 1])
    hair = head & rows & ~face & ~ears
    neck = _draw(size, [np.array([lm[5], lm[11], [lm[11, 0] + 0.1 * w, size + w], [lm[5, 0] - 0.1 * w, size + w]])])
    background = ~(face | hair | ears | neck)
    brow_y, bridge_y = float(lm[17:27, 1].mean()), float(lm[29, 1])
    band = np.array([[lm[0, 0] - 0.05 * w, brow_y], [lm[16, 0] + 0.05 * w, brow_y]])
    band = np.concatenate([band, [[lm[16, 0] + 0.05 * w, bridge_y], [lm[0, 0] - 0.05 * w, bridge_y]]])
    lobes = [(b[0], b[3] - 0.06 * w, b[2], b[3] + 0.12 * w) for b in ear_boxes]
    crown = (cx - 0.7 * w, top - 0.5 * w, cx + 0.7 * w, top + 0.1 * w)
    accessories = _draw(size, [band], [*lobes, crown])
    return {
        "hair": hair,
        "eyes": eyes,
        "eyebrows": eyebrows,
        "nose": nose,
        "mouth": mouth,
        "skin": skin,
        "ears": ears,
        "background": background,
        "accessories": accessories,
    }


def region_pixel_mask(landmarks: np.ndarray, size: int, regions: list[str]) -> np.ndarray:
    """Union of the named regions as a boolean ``(size, size)`` mask.

    Args:
        landmarks: ``(68, 2)`` xy landmarks in the pixel frame of a ``size`` x ``size`` image.
        size: mask side in pixels.
        regions: names from :data:`REGIONS`.

    Returns:
        ``(size, size)`` bool, True = to be regenerated.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2), got {lm.shape}")
    parts = _parts(lm, size)
    out = np.zeros((size, size), dtype=bool)
    for name in check_regions(regions):
        out |= parts[name]
    return out


def token_mask(pixel_mask: np.ndarray, grid: int) -> np.ndarray:
    """Tokens whose pixel cell touches the mask: ``(S, S)`` bool -> ``(grid * grid,)`` bool, row-major.

    Raises:
        ValueError: the mask is not square or its side is not a multiple of ``grid``.
    """
    mask = np.asarray(pixel_mask, dtype=bool)
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1] or mask.shape[0] % grid:
        raise ValueError(f"pixel mask must be square with a side divisible by {grid}, got {mask.shape}")
    cell = mask.shape[0] // grid
    return mask.reshape(grid, cell, grid, cell).any(axis=(1, 3)).reshape(-1)  # (grid * grid,)


def mask_from_input(mask: Any, image_size: tuple[int, int]) -> np.ndarray:
    """A user mask (PIL / path / array / tensor; white = edit) -> boolean ``(H, W)`` at the input image's size.

    Raises:
        ValueError: unreadable mask, or its size differs from the input image's ``image_size`` ``(W, H)``.
    """
    import torch

    from unif2ace.pipeline.inputs import to_pil

    if isinstance(mask, torch.Tensor):
        arr = mask.detach().cpu().numpy()
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            raise ValueError(f"mask tensor must be (H, W), got shape {tuple(mask.shape)}")
        values = arr.astype(np.float64) > 0.5 if arr.dtype != bool else arr
    elif isinstance(mask, np.ndarray) and (mask.dtype == bool or mask.ndim == 2):
        values = mask.astype(bool) if mask.dtype == bool else mask > 127
        if values.ndim != 2:
            raise ValueError(f"mask array must be (H, W), got shape {mask.shape}")
    else:
        img = to_pil(mask, what="mask")
        values = np.asarray(img.convert("L")) > 127
    height, width = values.shape
    if (width, height) != tuple(image_size):
        raise ValueError(f"mask is {width}x{height} but the image is {image_size[0]}x{image_size[1]}; resize the mask")
    return values
