"""Face-specific generation metrics: prompt attribute accuracy, edit identity preservation, text-image alignment.

* **Attribute accuracy** (no paper counterpart; a face-specific stand-in for the VLM-score when no judge is
  configured): the attributes a prompt states (phrase matcher) are compared with what the face-attribute
  annotators (``unif2ace.data.annotation``) read from the generated face. Caveat, recorded in the report: our
  only annotators are the ones that labelled the training records (dlib age/gender, FER expression, landmark
  geometry, colour heuristics), so a model that learned their biases is not penalised for them; their accuracy on
  the eye-labelled gold set (``docs/data.md``) bounds how far the numbers can be trusted.
* **Edit identity preservation**: the dlib ResNet identity descriptor (128-d, same identity when the Euclidean
  distance is < 0.6) of the input vs the edited face, next to input vs its plain VQ reconstruction (what the
  tokenizer alone loses), and the mean absolute pixel change inside vs outside the edited region.
* **Text-image alignment**: the semantic face-text encoder's score (``unif2ace.encoders.load_encoder("clip")``)
  of each image with its prompt, when that encoder is installed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from unif2ace.data.annotation.taxonomy import mentions

__all__ = ["prompt_attributes", "AttributeJudge", "identity_distance", "pixel_change", "alignment_scores"]

log = logging.getLogger(__name__)
SAME_IDENTITY = 0.6  # dlib's face_recognition threshold on the Euclidean descriptor distance


def prompt_attributes(prompt: str) -> dict[str, Any]:
    """Attribute values a prompt states unambiguously (one value per attribute)."""
    return {name: next(iter(vs)) for name, vs in mentions(prompt).items() if len(vs) == 1}


class AttributeJudge:
    """Reads attributes from generated faces with the annotation backends.

    Args:
        annotators: backend names (default: all registered).

    Raises:
        FileNotFoundError: no backend could be built (their packages / model files are missing).
    """

    def __init__(self, annotators: Sequence[str] | None = None) -> None:
        from unif2ace.data.annotation.protocol import build_annotators, tag

        self.annotators = build_annotators(annotators)
        if not self.annotators:
            raise FileNotFoundError("no face-attribute annotator available (install requirements/data-nodeps.txt)")
        self.tags = [tag(a) for a in self.annotators]
        try:
            from unif2ace.data.annotation.landmarks import LandmarkAnalyzer

            self.analyzer: Any = LandmarkAnalyzer()
        except (ImportError, FileNotFoundError) as err:
            log.warning("no dlib landmarks (%s): geometry attributes are not judged", err)
            self.analyzer = None

    def read(self, image: Image.Image) -> dict[str, Any]:
        """Attribute name -> value read from one face (merged in backend priority order)."""
        from unif2ace.data.annotation.protocol import face_info, merge

        face = face_info(image.convert("RGB"), self.analyzer)
        merged = merge([(a, a.annotate(image, face)) for a in self.annotators])
        return {name: entry["value"] for name, entry in merged.items()}

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> tuple[list[dict[str, bool]], list]:
        """Per image: attribute -> whether the face shows the value its prompt states (judgeable ones only).

        Returns:
            ``(hits, read)``: per image ``{attribute: correct}``, and the attributes read from each image.
        """
        hits, read = [], []
        for image, prompt in zip(images, prompts, strict=True):
            seen = self.read(image)
            wanted = prompt_attributes(prompt)
            hits.append({n: seen[n] == v for n, v in wanted.items() if n in seen})
            read.append(seen)
        return hits, read


def identity_distance(analyzer: Any, a: Image.Image, b: Image.Image) -> float | None:
    """The dlib identity-descriptor distance between the largest faces of two images (None if one has no face)."""
    faces_a, faces_b = analyzer.detect(a), analyzer.detect(b)
    if not faces_a or not faces_b:
        return None
    return float(np.linalg.norm(analyzer.embed(a, faces_a[0]) - analyzer.embed(b, faces_b[0])))


def pixel_change(before: Image.Image, after: Image.Image, mask: Image.Image) -> tuple[float, float]:
    """Mean absolute RGB change (0-255 scale) inside and outside ``mask`` (``L`` image, > 127 = inside)."""
    x = np.asarray(before.convert("RGB").resize(after.size), np.float64)
    y = np.asarray(after.convert("RGB"), np.float64)
    m = np.asarray(mask.convert("L").resize(after.size)) > 127  # (H, W)
    diff = np.abs(x - y).mean(axis=2)  # (H, W)
    inside = float(diff[m].mean()) if m.any() else float("nan")
    outside = float(diff[~m].mean()) if (~m).any() else float("nan")
    return inside, outside


def alignment_scores(images: Sequence[Image.Image], prompts: Sequence[str]) -> tuple[list[float] | None, str]:
    """Cosine of each image with its own prompt under the semantic face-text encoder, or ``(None, reason)``."""
    try:
        encoder = _semantic_encoder()
    except (ImportError, FileNotFoundError, ValueError) as err:
        return None, f"text-image alignment skipped: semantic encoder unavailable ({err})"
    import torch

    from unif2ace.utils.images import to_tensor

    pixels = torch.stack([to_tensor(im.convert("RGB")) for im in images])  # (B, 3, H, W) in [-1, 1]
    scores = encoder.score(pixels, list(prompts))  # (B, B) image x text cosines
    return [float(v) for v in torch.diagonal(scores)], ""


def _semantic_encoder():
    """``load_encoder("clip")`` when the encoders package exposes it, else the semantic encoder loader."""
    try:
        from unif2ace.encoders import load_encoder
    except ImportError:
        from unif2ace.encoders.semantic import load_semantic_encoder

        return load_semantic_encoder()
    return load_encoder("clip")
