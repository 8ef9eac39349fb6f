"""Landmark-geometry annotator: smile, mouth open, eyes closed, head pose, face shape, eyebrows (dlib 68 points).

Point indices follow iBUG 300-W (0-based): jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59,
inner lips 60-67. Features (all scale-free, divided by the inter-ocular distance ``d_eye`` or the face width):

* eye aspect ratio (Soukupová & Čech, "Real-Time Eye Blink Detection using Facial Landmarks", 2016):
  ``EAR = (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)``, averaged over both eyes; closed below a threshold;
* mouth opening ``|p62 - p66| / |p48 - p54|`` (inner-lip gap over mouth width);
* smile: mouth width ``|p48 - p54| / d_eye`` and corner lift (lip-centre y minus mean corner y, over ``d_eye``);
* yaw from the nose tip's horizontal offset between the jaw ends, roll from the eye line, pitch from the nose
  tip's height between the eye line and the chin;
* face shape from face length / cheek width and jaw width / cheek width.

Thresholds were calibrated on the even-indexed half of the gold set (``data/gold``) and are reported on the
other half in ``docs/data.md``.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from unif2ace.data.annotation.protocol import AttributeValue, FaceInfo

# [INF] calibrated on the gold calibration half (see module docstring); confidence grows with the margin.
EAR_CLOSED = 0.17
MOUTH_OPEN = 0.09
SMILE_SCORE = 0.04
YAW_TURNED = 0.15
ROLL_TILTED_DEG = 8.0


class LandmarkAnalyzer:
    """dlib HOG detector + 68-point predictor, with landmark fitting inside a given box."""

    def __init__(self) -> None:
        from unif2ace.data.faces import FaceAnalyzer

        self._analyzer = FaceAnalyzer(upsample=1)

    def detect(self, image: Image.Image) -> list:
        """Faces (largest first) with ``box`` and ``landmarks``."""
        return self._analyzer.detect(image)

    def landmarks(self, image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
        """``(68, 2)`` landmarks fitted inside ``box``."""
        import dlib

        shape = self._analyzer._predictor(np.asarray(image.convert("RGB")), dlib.rectangle(*box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)  # (68, 2)


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


def features(lm: np.ndarray) -> dict[str, float]:
    """Scale-free geometry features from ``(68, 2)`` landmarks (see module docstring)."""
    eye_r, eye_l = lm[36:42].mean(0), lm[42:48].mean(0)
    d_eye = max(_dist(eye_r, eye_l), 1e-6)

    def ear(e: np.ndarray) -> float:
        return (_dist(e[1], e[5]) + _dist(e[2], e[4])) / (2 * max(_dist(e[0], e[3]), 1e-6))

    mouth_w = _dist(lm[48], lm[54])
    lip_centre_y = (lm[62, 1] + lm[66, 1] + lm[51, 1] + lm[57, 1]) / 4
    corner_y = (lm[48, 1] + lm[54, 1]) / 2
    face_w = max(_dist(lm[0], lm[16]), 1e-6)
    cheek_w = max(_dist(lm[1], lm[15]), 1e-6)
    jaw_w = _dist(lm[5], lm[11])
    brow_y = lm[17:27, 1].mean()
    eye_y = (eye_r[1] + eye_l[1]) / 2
    return {
        "ear": (ear(lm[36:42]) + ear(lm[42:48])) / 2,
        "mouth_open": _dist(lm[62], lm[66]) / max(mouth_w, 1e-6),
        "mouth_width": mouth_w / d_eye,
        "corner_lift": (lip_centre_y - corner_y) / d_eye,
        "yaw": (lm[30, 0] - (lm[0, 0] + lm[16, 0]) / 2) / face_w,
        "roll": math.degrees(math.atan2(eye_l[1] - eye_r[1], eye_l[0] - eye_r[0])),
        "pitch": (lm[30, 1] - eye_y) / max(lm[8, 1] - eye_y, 1e-6),
        "length_ratio": (lm[8, 1] - brow_y) / cheek_w,
        "jaw_ratio": jaw_w / cheek_w,
        "brow_arch": _brow_arch(lm) / d_eye,
    }


def _brow_arch(lm: np.ndarray) -> float:
    """How far the brow middle rises above the line through its ends (mean of both brows, pixels)."""
    out = []
    for a, m, b in ((17, 19, 21), (22, 24, 26)):
        line_y = (lm[a, 1] + lm[b, 1]) / 2
        out.append(line_y - lm[m, 1])
    return float(np.mean(out))


def _conf(margin: float, scale: float) -> float:
    """Confidence in ``[0.5, 1)`` from a signed distance to a threshold."""
    return 0.5 + 0.5 * math.tanh(abs(margin) / scale)


def smile_score(f: dict[str, float]) -> float:
    """Positive for a smile: wide mouth and raised corners ([INF] linear score, fit on the calibration half)."""
    return (f["mouth_width"] - 0.92) + 1.5 * f["corner_lift"]


class GeometryAnnotator:
    """Action and shape attributes from landmark geometry."""

    name = "geometry"
    version = "1"
    attributes = ("smile", "mouth_open", "eyes_closed", "head_pose", "head_tilt", "face_shape", "eyebrow_shape")

    def annotate(self, image: Image.Image, face: FaceInfo) -> dict[str, AttributeValue]:
        """Predict from ``face.landmarks`` (nothing when there are none)."""
        if face.landmarks is None:
            return {}
        f = features(face.landmarks)
        face.extras["geometry"] = f
        s = smile_score(f)
        out = {
            "smile": AttributeValue(s > SMILE_SCORE, _conf(s - SMILE_SCORE, 0.08)),
            "mouth_open": AttributeValue(f["mouth_open"] > MOUTH_OPEN, _conf(f["mouth_open"] - MOUTH_OPEN, 0.05)),
            "eyes_closed": AttributeValue(f["ear"] < EAR_CLOSED, _conf(f["ear"] - EAR_CLOSED, 0.05)),
            "head_tilt": AttributeValue(
                "tilted" if abs(f["roll"]) > ROLL_TILTED_DEG else "level", _conf(abs(f["roll"]) - ROLL_TILTED_DEG, 4)
            ),
        }
        yaw = f["yaw"]
        # image-left = the person's right; "turned_left" means towards the person's left
        pose = "frontal" if abs(yaw) <= YAW_TURNED else ("turned_left" if yaw > 0 else "turned_right")
        out["head_pose"] = AttributeValue(pose, _conf(abs(yaw) - YAW_TURNED, 0.05))
        if pose == "frontal" and abs(f["roll"]) <= 2 * ROLL_TILTED_DEG:  # shape ratios need a frontal face
            out["face_shape"] = AttributeValue(*_face_shape(f))
            arch = f["brow_arch"]
            out["eyebrow_shape"] = AttributeValue("arched" if arch > 0.15 else "straight", _conf(arch - 0.15, 0.03))
        return out


def _face_shape(f: dict[str, float]) -> tuple[str, float]:
    """Rule of thumb on length/width and jaw/cheek ratios.

    [INF] cut points at quantiles of the mini set; not measured on the gold set.
    """
    length, jaw = f["length_ratio"], f["jaw_ratio"]
    if length > 1.0:
        return "long", _conf(length - 1.0, 0.05)
    if jaw < 0.63:
        return "heart", _conf(0.63 - jaw, 0.03)
    if jaw > 0.70 and length < 0.93:
        return "square", _conf(jaw - 0.70, 0.03)
    if length < 0.88:
        return "round", _conf(0.88 - length, 0.05)
    return "oval", 0.6
