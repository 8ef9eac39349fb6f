"""Colour and texture heuristics over landmark-defined regions: skin tone, hair, background and accessories.

Colours are compared in CIE L*a*b* (D65). Regions (``d`` = inter-ocular distance, ``y_b`` = mean brow height):

* skin: two cheek polygons (jaw points 1-3 / 13-15 to the nose side and the lower eyelid); skin tone from the
  Individual Typology Angle ``ITA = atan2(L* - 50, b*)`` in degrees (Chardon et al., Int. J. Cosmet. Sci. 1991),
  high = light;
* hair: a band ``[y_b - 1.5 d, y_b - 0.9 d]`` above the brows, and the strips beside the jaw below the ear line
  (hair length); pixels closer to the skin colour than ``SKIN_DIST`` count as skin (bald / forehead);
* forehead: ``[y_b - 0.5 d, y_b - 0.1 d]`` between the brows; non-skin there means bangs (or a hat brim);
* background: the two top corner patches (12 % of the side);
* glasses: vertical-gradient energy on the nose bridge between the eyes (a frame crosses it); sunglasses: eye
  regions much darker than the cheeks;
* beard / moustache: chin and upper-lip regions darker than the cheeks (ΔL*) with more texture.

Every threshold is an [INF] choice calibrated on the even-indexed half of the gold set; accuracy on the other half
is in ``docs/data.md`` and decides which attributes are marked reliable.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from unif2ace.data.annotation.protocol import AttributeValue, FaceInfo

SKIN_DIST = 14.0
"""Lab distance below which a pixel counts as skin-coloured."""


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 sRGB -> ``(..., 3)`` float CIE L*a*b* (D65)."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _poly_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    img = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in points.tolist()], fill=1)
    return np.asarray(img, dtype=bool)


def _rect(lab: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    """Pixels ``(N, 3)`` of an axis-aligned box clipped to the image."""
    h, w = lab.shape[:2]
    x0, x1 = int(np.clip(round(x0), 0, w)), int(np.clip(round(x1), 0, w))
    y0, y1 = int(np.clip(round(y0), 0, h)), int(np.clip(round(y1), 0, h))
    return lab[y0:y1, x0:x1].reshape(-1, 3)


def regions(rgb: np.ndarray, lm: np.ndarray) -> dict[str, np.ndarray]:
    """Lab pixel sets ``(N, 3)`` per region (see module docstring) plus ``grey`` bridge/eye patches."""
    lab = rgb_to_lab(rgb)  # (H, W, 3)
    h, w = rgb.shape[:2]
    eye_r, eye_l = lm[36:42].mean(0), lm[42:48].mean(0)
    d = float(np.linalg.norm(eye_l - eye_r))
    yb = float(lm[17:27, 1].mean())
    cheeks = _poly_mask((h, w), lm[[1, 2, 3, 31, 41, 40]]) | _poly_mask((h, w), lm[[15, 14, 13, 35, 46, 47]])
    x_l, x_r = lm[17, 0], lm[26, 0]
    jaw_y = lm[3, 1]
    side = 0.12 * min(h, w)
    out = {
        "skin": lab[cheeks],
        "hair": _rect(lab, x_l, x_r, yb - 1.5 * d, yb - 0.9 * d),
        "forehead": _rect(lab, lm[19, 0], lm[24, 0], yb - 0.5 * d, yb - 0.1 * d),
        "beside": np.concatenate(
            [
                _rect(lab, lm[3, 0] - 0.6 * d, lm[3, 0] - 0.2 * d, jaw_y, jaw_y + d),
                _rect(lab, lm[13, 0] + 0.2 * d, lm[13, 0] + 0.6 * d, jaw_y, jaw_y + d),
            ]
        ),
        "background": np.concatenate([_rect(lab, 0, side, 0, side), _rect(lab, w - side, w, 0, side)]),
        "moustache": _rect(lab, lm[48, 0], lm[54, 0], lm[33, 1] + 0.1 * (lm[51, 1] - lm[33, 1]), lm[51, 1] - 1),
        "chin": _rect(lab, lm[6, 0], lm[10, 0], lm[57, 1] + 0.25 * (lm[8, 1] - lm[57, 1]), lm[8, 1] - 1),
        "eyes": np.concatenate([_rect(lab, *_box(lm[36:42], 0.15 * d)), _rect(lab, *_box(lm[42:48], 0.15 * d))]),
    }
    gy = np.abs(np.diff(lab[..., 0], axis=0))  # (H-1, W) vertical L* gradient
    bridge = gy[
        int(lm[27, 1] - 0.25 * d) : int(lm[28, 1] + 0.1 * d), int(lm[39, 0] + 0.1 * d) : int(lm[42, 0] - 0.1 * d)
    ]
    out["bridge_grad"] = bridge.reshape(-1, 1) if bridge.size else np.zeros((1, 1))
    return out


def _box(pts: np.ndarray, pad: float) -> tuple[float, float, float, float]:
    return pts[:, 0].min() - pad, pts[:, 0].max() + pad, pts[:, 1].min() - pad, pts[:, 1].max() + pad


def colour_features(rgb: np.ndarray, lm: np.ndarray) -> dict[str, float]:
    """Scalar features for the heuristics (medians in Lab, fractions of skin-like pixels, texture)."""
    r = regions(rgb, lm)
    skin = np.median(r["skin"], 0) if len(r["skin"]) else np.array([60.0, 15.0, 20.0])

    def med(name: str) -> np.ndarray:
        return np.median(r[name], 0) if len(r[name]) else skin

    def skin_frac(name: str) -> float:
        return float((np.linalg.norm(r[name] - skin, axis=1) < SKIN_DIST).mean()) if len(r[name]) else 1.0

    hair = r["hair"][np.linalg.norm(r["hair"] - skin, axis=1) >= SKIN_DIST] if len(r["hair"]) else r["hair"]
    hair_med = np.median(hair, 0) if len(hair) >= 5 else med("hair")
    beside_hair = float((np.linalg.norm(r["beside"] - hair_med, axis=1) < 18).mean()) if len(r["beside"]) else 0.0
    bg = med("background")
    return {
        "ita": math.degrees(math.atan2(skin[0] - 50, skin[2])),
        "skin_L": float(skin[0]),
        "skin_a": float(skin[1]),
        "hair_L": float(hair_med[0]),
        "hair_a": float(hair_med[1]),
        "hair_b": float(hair_med[2]),
        "hair_skin_frac": skin_frac("hair"),
        "forehead_skin_frac": skin_frac("forehead"),
        "beside_hair_frac": beside_hair,
        "bg_L": float(bg[0]),
        "bg_a": float(bg[1]),
        "bg_b": float(bg[2]),
        "bridge_grad": float(np.mean(r["bridge_grad"])),
        "eyes_dL": float(med("eyes")[0] - skin[0]),
        "moustache_dL": float(med("moustache")[0] - skin[0]),
        "chin_dL": float(med("chin")[0] - skin[0]),
        "chin_tex": float(np.std(r["chin"][:, 0])) if len(r["chin"]) else 0.0,
    }


# [INF] cut points read off the calibration half of the gold set (medians / 10th-90th percentiles per class)
HAIR_CENTROIDS = {
    "black": (18.6, 4.2, 0.5),
    "brown": (28.7, 7.8, 6.2),
    "blond": (51.4, 4.7, 11.7),
    "gray": (54.3, 4.7, 1.0),
}
HAIR_SCALE = (10.0, 3.0, 4.0)
ITA_LIGHT, ITA_DARK = 25.0, 0.0
GLASSES_GRAD, SUNGLASSES_DL = 3.4, -25.0
BEARD_DL, MOUSTACHE_DL = -6.0, -7.0
BALD_SKIN, BANGS_SKIN = 0.3, 0.45
LONG_HAIR, SHORT_HAIR = 0.45, 0.15
BACKGROUND_HUES = (
    ("red", 20),
    ("orange", 60),
    ("yellow", 100),
    ("green", 170),
    ("blue", 280),
    ("purple", 340),
    ("red", 361),
)


def _side(x: float, t: float, scale: float) -> float:
    return 0.5 + 0.5 * math.tanh(abs(x - t) / scale)


def background(f: dict[str, float]) -> dict[str, AttributeValue]:
    """Background brightness (L* bands 35 / 70) and colour (hue of a*b* when the chroma exceeds 12)."""
    light = f["bg_L"]
    band = "dark" if light < 35 else "bright" if light > 70 else "medium"
    chroma = math.hypot(f["bg_a"], f["bg_b"])
    hue = math.degrees(math.atan2(f["bg_b"], f["bg_a"])) % 360
    colour = "neutral" if chroma < 12 else next(name for name, upper in BACKGROUND_HUES if hue < upper)
    return {
        "background_brightness": AttributeValue(band, _side(light, 35 if band == "dark" else 70, 10)),
        "background_color": AttributeValue(colour, _side(chroma, 12, 6)),
    }


class ColourAnnotator:
    """Skin tone, hair colour/length, bangs, baldness, glasses, sunglasses, beard, moustache, background."""

    name = "colour-heuristics"
    version = "1"
    attributes = (
        "skin_tone",
        "hair_color",
        "hair_length",
        "bangs",
        "bald",
        "eyeglasses",
        "sunglasses",
        "beard",
        "mustache",
        "background_brightness",
        "background_color",
    )

    def annotate(self, image: Image.Image, face: FaceInfo) -> dict[str, AttributeValue]:
        """Predict from landmark regions (nothing without landmarks)."""
        if face.landmarks is None:
            return {}
        f = colour_features(face.rgb, face.landmarks)
        face.extras["colour"] = f
        ita = f["ita"]
        tone = "light" if ita > ITA_LIGHT else "dark" if ita < ITA_DARK else "medium"
        hair = np.array([f["hair_L"], f["hair_a"], f["hair_b"]])
        dist = {k: float(np.sum(((hair - np.array(c)) / HAIR_SCALE) ** 2)) for k, c in HAIR_CENTROIDS.items()}
        best = sorted(dist, key=dist.get)
        bald = f["hair_skin_frac"] > BALD_SKIN
        glasses = f["bridge_grad"] > GLASSES_GRAD
        length = (
            "long" if f["beside_hair_frac"] > LONG_HAIR else "short" if f["beside_hair_frac"] < SHORT_HAIR else "medium"
        )
        out = {
            "skin_tone": AttributeValue(tone, _side(ita, ITA_LIGHT if tone == "light" else ITA_DARK, 10)),
            "bald": AttributeValue(bald, _side(f["hair_skin_frac"], BALD_SKIN, 0.15)),
            "eyeglasses": AttributeValue(glasses, _side(f["bridge_grad"], GLASSES_GRAD, 1.0)),
            "sunglasses": AttributeValue(
                glasses and f["eyes_dL"] < SUNGLASSES_DL, _side(f["eyes_dL"], SUNGLASSES_DL, 8)
            ),
            "beard": AttributeValue(f["chin_dL"] < BEARD_DL, _side(f["chin_dL"], BEARD_DL, 4)),
            "mustache": AttributeValue(f["moustache_dL"] < MOUSTACHE_DL, _side(f["moustache_dL"], MOUSTACHE_DL, 4)),
            **background(f),
        }
        if not bald:
            margin = dist[best[1]] - dist[best[0]]
            out["hair_color"] = AttributeValue(best[0], 0.5 + 0.5 * math.tanh(margin / 4))
            out["hair_length"] = AttributeValue(length, 0.6)
            out["bangs"] = AttributeValue(
                f["forehead_skin_frac"] < BANGS_SKIN, _side(f["forehead_skin_frac"], BANGS_SKIN, 0.2)
            )
        return out
