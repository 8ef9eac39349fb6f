"""Frozen image encoders for the sequence-level feature experts (spec §3.3) and their feature caches.

* ``clip`` — :class:`~unif2ace.encoders.semantic.SemanticEncoder`: a small CNN trained LiT-style against the
  frozen MiniLM sentence encoder on our face captions (``(B, 4, 64)`` tokens; ``embed_text`` / ``embed_image`` /
  ``score``). Trained weights ship in ``unif2ace/weights/semantic``.
* ``face`` — :class:`~unif2ace.encoders.face_id.FaceIdEncoder`: dlib's 128-d identity descriptor (one token).

Both implement :class:`unif2ace.model.interfaces.ImageEncoder`; ``unif2ace data features`` turns either into a
:class:`unif2ace.model.encoders.FeatureCache` keyed by record id (what ``data.features`` in a training config
reads).
"""

from __future__ import annotations

from pathlib import Path

from unif2ace.model.interfaces import ImageEncoder

KINDS = ("clip", "face")


def load_encoder(kind: str, path: str | Path | None = None) -> ImageEncoder:
    """A frozen encoder by feature kind.

    Args:
        kind: ``clip`` (semantic face-text encoder) or ``face`` (dlib identity descriptor).
        path: for ``clip``, a folder written by ``unif2ace data train-semantic`` (default: the shipped weights);
            unused for ``face``.

    Raises:
        ValueError: an unknown kind, or a path given for ``face``.
        FileNotFoundError: weights or backend files are missing (the message names the file or install).
    """
    if kind == "clip":
        from unif2ace.encoders.semantic import load_semantic_encoder

        return load_semantic_encoder(path)
    if kind == "face":
        if path is not None:
            raise ValueError("the face encoder uses dlib's shipped model files; drop the path argument")
        from unif2ace.encoders.face_id import FaceIdEncoder

        return FaceIdEncoder()
    raise ValueError(f"unknown encoder kind {kind!r}; choose from {', '.join(KINDS)}")


__all__ = ["KINDS", "load_encoder"]
