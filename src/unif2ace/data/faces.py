"""Face detection, 68-point landmarks, FFHQ-style alignment and identity embeddings (dlib backend).

Detection uses dlib's HOG + linear-SVM frontal face detector, landmarks dlib's 68-point shape predictor (iBUG 300-W
layout) and identities dlib's 128-d ResNet face descriptor (two photos of one person lie closer than 0.6 in
Euclidean distance, dlib's documented operating point). The model files come from the PyPI package
``face-recognition-models``; we locate them with ``importlib.util.find_spec`` and never import it (its
``__init__`` needs ``pkg_resources``, gone from setuptools >= 81). Install: ``pip install --no-deps -r
requirements/data-nodeps.txt``.

Alignment follows the FFHQ recipe (Karras et al., "A Style-Based Generator Architecture for GANs", 2019, dataset
section): from the eye centres ``e_l, e_r`` and mouth corners ``m_l, m_r`` (all in pixels),

    e = (e_l + e_r) / 2,  u = e_r - e_l,  d = (m_l + m_r) / 2 - e,
    x = normalise(u - rot90(d)) * max(2 |u|, 1.8 |d|),   rot90((a, b)) = (-b, a),
    y = rot90(x),  c = e + 0.1 d,
    crop quad = (c - x - y, c - x + y, c + x + y, c + x - y)   (top-left, bottom-left, bottom-right, top-right),

which is then warped to a square. Pixels outside the photo are filled by mirror padding, blended towards a
blurred copy with distance from the border (FFHQ does the same to hide the seam).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

MODEL_FILES = {
    "landmarks": "shape_predictor_68_face_landmarks.dat",
    "embedding": "dlib_face_recognition_resnet_model_v1.dat",
}
SAME_IDENTITY_DISTANCE = 0.5
"""Default embedding distance below which two faces are grouped as one person. [INF] dlib's verification
operating point is 0.6, but for grouping a corpus we measured that 4.0% of pairs of *different* synthetic
identities fall below 0.6 and 0.25% below 0.5 (64 MobileStyleGAN faces at 256²), while re-crops of one photo
(mirrored, rotated, rescaled) stay near 0.2; 0.5 trades a little leakage risk for far fewer false merges."""
INSTALL_HINT = "pip install --no-deps -r requirements/data-nodeps.txt  (dlib-bin + face-recognition-models)"


@dataclass
class Face:
    """One detected face.

    Attributes:
        box: ``(left, top, right, bottom)`` in pixels.
        score: detector confidence (HOG-SVM margin; higher is surer).
        landmarks: ``(68, 2)`` float ``(x, y)`` pixel positions (iBUG 300-W order).
    """

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray = field(repr=False)

    @property
    def area(self) -> int:
        """Box area in pixels."""
        return max(0, self.box[2] - self.box[0]) * max(0, self.box[3] - self.box[1])


def backend_available() -> bool:
    """Whether dlib and the ``face-recognition-models`` files are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("dlib", "face_recognition_models"))


def model_file(kind: str) -> Path:
    """Path of a dlib model file (``landmarks`` or ``embedding``) inside ``face-recognition-models``.

    Raises:
        FileNotFoundError: the package is missing (the message says how to install it).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"face detection needs dlib's model files: {INSTALL_HINT}")
    path = Path(spec.origin).parent / "models" / MODEL_FILES[kind]
    if not path.is_file():
        raise FileNotFoundError(f"missing dlib model file {path}; reinstall face-recognition-models")
    return path


class FaceAnalyzer:
    """dlib detector + 68-point landmarks (+ the 128-d identity network, loaded on first use).

    Args:
        upsample: times the detector upsamples the image (1 finds faces down to ~40 px, 0 is ~4x faster).
        max_side: the detector sees a copy shrunk to at most this many pixels per side (bounds its cost on large
            photos); landmarks are always fitted on the full-resolution image.
    """

    def __init__(self, upsample: int = 1, max_side: int = 640) -> None:
        try:
            import dlib
        except ImportError:
            raise FileNotFoundError(f"face detection needs dlib: {INSTALL_HINT}") from None
        self._dlib = dlib
        self.upsample, self.max_side = upsample, max_side
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model_file("landmarks")))
        self._encoder = None

    def detect(self, img: Image.Image) -> list[Face]:
        """All frontal faces in an RGB image, largest first.

        Args:
            img: RGB image.

        Returns:
            Faces with boxes, scores and ``(68, 2)`` landmarks.
        """
        img = img.convert("RGB")
        arr = np.asarray(img)  # (H, W, 3) uint8
        scale = min(1.0, self.max_side / max(img.size))
        small = arr if scale == 1.0 else np.asarray(img.resize((round(img.width * scale), round(img.height * scale))))
        rects, scores, _ = self._detector.run(small, self.upsample, 0.0)
        faces = []
        for small_rect, score in zip(rects, scores, strict=True):
            left, top, right, bottom = (
                round(v / scale) for v in (small_rect.left(), small_rect.top(), small_rect.right(), small_rect.bottom())
            )
            rect = self._dlib.rectangle(left, top, right, bottom)
            shape = self._predictor(arr, rect)
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)  # (68, 2)
            faces.append(Face((rect.left(), rect.top(), rect.right(), rect.bottom()), float(score), points))
        return sorted(faces, key=lambda f: -f.area)

    def embed(self, img: Image.Image, face: Face) -> np.ndarray:
        """128-d identity descriptor of ``face`` in ``img`` (``(128,)`` float32, unit-scale distances)."""
        if self._encoder is None:
            self._encoder = self._dlib.face_recognition_model_v1(str(model_file("embedding")))
        arr = np.asarray(img.convert("RGB"))  # (H, W, 3)
        left, top, right, bottom = face.box
        rect = self._dlib.rectangle(left, top, right, bottom)
        parts = [self._dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks]
        shape = self._dlib.full_object_detection(rect, parts)
        return np.asarray(self._encoder.compute_face_descriptor(arr, shape), dtype=np.float32)


def alignment_quad(landmarks: np.ndarray) -> np.ndarray:
    """FFHQ crop quadrilateral from 68-point landmarks (formula in the module docstring).

    Args:
        landmarks: ``(68, 2)`` ``(x, y)`` pixels.

    Returns:
        ``(4, 2)`` corners: top-left, bottom-left, bottom-right, top-right.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_l, eye_r = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    eye_mid, eye_vec = (eye_l + eye_r) / 2, eye_r - eye_l
    down = (lm[48] + lm[54]) / 2 - eye_mid  # eye centre -> mouth centre

    def rot90(v: np.ndarray) -> np.ndarray:
        return np.array([-v[1], v[0]])

    x = eye_vec - rot90(down)
    x = x / np.hypot(*x) * max(2.0 * np.hypot(*eye_vec), 1.8 * np.hypot(*down))
    y = rot90(x)
    c = eye_mid + 0.1 * down
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def align_face(img: Image.Image, landmarks: np.ndarray, size: int) -> Image.Image:
    """Crop, rotate and scale a face FFHQ-style to ``size`` x ``size``.

    Args:
        img: RGB photo.
        landmarks: ``(68, 2)`` landmarks of the face in ``img``.
        size: output side in pixels.

    Returns:
        The aligned RGB face.
    """
    quad = alignment_quad(landmarks)
    side = float(np.hypot(*(quad[3] - quad[0])))  # crop side in source pixels
    shrink = int(side / size / 2)
    if shrink > 1:  # pre-shrink very large crops so the final resample is never a > 2x reduction
        img = img.resize((round(img.width / shrink), round(img.height / shrink)), Image.Resampling.LANCZOS)
        quad, side = quad / shrink, side / shrink
    img, quad = _pad_for_quad(img, quad)
    work = max(size, int(round(side)))
    warped = img.transform((work, work), Image.Transform.QUAD, tuple(quad.flatten()), Image.Resampling.BICUBIC)
    return warped if work == size else warped.resize((size, size), Image.Resampling.LANCZOS)


def _pad_for_quad(img: Image.Image, quad: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """Mirror-pad ``img`` so that ``quad`` lies inside it; the padding fades into a blurred copy."""
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    left, top = max(0, -lo[0]) + 2, max(0, -lo[1]) + 2
    right, bottom = max(0, hi[0] - img.width) + 2, max(0, hi[1] - img.height) + 2
    if left == top == right == bottom == 2:
        return img, quad
    arr = np.asarray(img, dtype=np.float32)  # (H, W, 3)
    padded = np.pad(arr, ((top, bottom), (left, right), (0, 0)), mode="symmetric")  # (H + t + b, W + l + r, 3)
    h, w = padded.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)  # (h, w) each
    dist = np.maximum.reduce([left - xs, xs - (w - 1 - right), top - ys, ys - (h - 1 - bottom), np.zeros_like(xs)])
    fade = np.clip(dist / max(4.0, 0.1 * min(arr.shape[:2])), 0.0, 1.0)[..., None]  # (h, w, 1): 0 inside, 1 far out
    blur_radius = max(1.0, 0.02 * min(arr.shape[:2]))
    blurred = np.asarray(
        Image.fromarray(padded.round().astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur_radius)), np.float32
    )
    mixed = padded + (blurred - padded) * fade
    out = Image.fromarray(np.clip(mixed.round(), 0, 255).astype(np.uint8))
    return out, quad + np.array([left, top], dtype=np.float64)
