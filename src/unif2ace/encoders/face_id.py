"""Face-identity features for the sequence-level "face" expert (spec §3.3): dlib's 128-d ResNet descriptor.

dlib's ``dlib_face_recognition_resnet_model_v1`` (from ``face-recognition-models``, the same files
``unif2ace data import`` uses for identities; :class:`unif2ace.data.faces.FaceAnalyzer`) maps an aligned face to
a 128-d vector in which two photos of one person lie closer than 0.6. :class:`FaceIdEncoder` implements
:class:`unif2ace.model.interfaces.ImageEncoder` (``name = "face"``, ``dim = 128``, one token). Faces the HOG
detector misses (tight aligned crops often are) get the canonical FFHQ face box of the image and landmarks
fitted inside it, as the annotators do; an image with no usable face gives an all-zero row, which the
sequence MoE reads as "no features".
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def ffhq_face_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The face area of an FFHQ-aligned crop, ``(left, top, right, bottom)`` in pixels ([INF])."""
    return round(0.22 * width), round(0.30 * height), round(0.78 * width), round(0.86 * height)


class FaceIdEncoder:
    """dlib 128-d identity descriptor as an ImageEncoder.

    Args:
        min_side: images are upscaled to at least this side before detection (dlib's detector and descriptor
            want faces of roughly 80+ pixels).
        fallback_box: use the FFHQ face box when no face is detected (aligned crops); otherwise return zeros.

    Raises:
        FileNotFoundError: dlib or its model files are missing (the message names the install command).
    """

    name = "face"
    dim = 128

    def __init__(self, min_side: int = 150, fallback_box: bool = True) -> None:
        from unif2ace.data.faces import FaceAnalyzer

        self._analyzer = FaceAnalyzer(upsample=1)
        self.min_side, self.fallback_box = min_side, fallback_box

    def embed_pil(self, img: Image.Image) -> np.ndarray | None:
        """``(128,)`` float32 descriptor of the largest face in ``img``, or ``None`` when there is none."""
        from unif2ace.data.faces import Face

        img = img.convert("RGB")
        if min(img.size) < self.min_side:
            scale = self.min_side / min(img.size)
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
        faces = self._analyzer.detect(img)
        if faces:
            return self._analyzer.embed(img, faces[0])
        if not self.fallback_box:
            return None
        import dlib

        box = ffhq_face_box(*img.size)
        shape = self._analyzer._predictor(np.asarray(img), dlib.rectangle(*box))  # same fit as the annotators
        landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)  # (68, 2)
        return self._analyzer.embed(img, Face(box, 0.0, landmarks))

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in ``[-1, 1]`` -> ``(B, 1, 128)`` descriptors (zeros where no face was found)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        out = torch.zeros(images.shape[0], 1, self.dim)
        arrays = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
        for i, arr in enumerate(arrays.numpy()):  # (H, W, 3) uint8
            vec = self.embed_pil(Image.fromarray(arr))
            if vec is not None:
                out[i, 0] = torch.from_numpy(vec)
        return out
