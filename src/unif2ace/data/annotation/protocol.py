"""Pluggable face annotators (spec §7.1 step 2: attribute classifiers feeding the caption writer).

An annotator is any object with ``name``, ``version``, ``attributes`` (the taxonomy names it can fill) and
``annotate(image, face) -> {name: AttributeValue}``; a vision-language model backend only has to implement that.
:func:`annotate_records` runs every requested backend over a records file, merges their outputs (the backend
listed first wins a conflict unless a later one is more confident by ``override_margin``), stores
``{"value", "confidence", "annotator": "name@version"}`` per attribute and the versions that ran in
``provenance["annotators"]``, and rewrites the file atomically every ``save_every`` records, so an interrupted
run resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from unif2ace.data.annotation.taxonomy import TAXONOMY, check_value

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttributeValue:
    """One predicted attribute: a value allowed by the taxonomy and a confidence in ``[0, 1]``."""

    value: Any
    confidence: float


@dataclass
class FaceInfo:
    """What annotators share about one face (computed once per image).

    Attributes:
        rgb: ``(H, W, 3)`` uint8 image.
        landmarks: ``(68, 2)`` float landmarks (iBUG 300-W order) or ``None`` when no face was found.
        box: ``(left, top, right, bottom)`` face box in pixels, or ``None``.
        extras: free slots annotators may fill for each other (e.g. a skin-colour estimate).
    """

    rgb: np.ndarray
    landmarks: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Annotator(Protocol):
    """A face-attribute backend."""

    name: str
    version: str
    attributes: tuple[str, ...]

    def annotate(self, image: Image.Image, face: FaceInfo) -> dict[str, AttributeValue]:
        """Predict some of ``attributes`` for one face (leave out what it cannot tell)."""
        ...


_REGISTRY: dict[str, Callable[[], Annotator]] = {}


def register_annotator(name: str, factory: Callable[[], Annotator]) -> None:
    """Make a backend available under ``name``.

    The factory may raise ``ImportError``/``FileNotFoundError`` when its package or model files are missing;
    such backends are skipped with a warning.
    """
    _REGISTRY[name] = factory


def available_annotators() -> list[str]:
    """Registered backend names, in default priority order."""
    from unif2ace.data.annotation import backends  # noqa: F401  (registers the built-in backends)

    return list(_REGISTRY)


def build_annotators(names: Iterable[str] | None = None) -> list[Annotator]:
    """Instantiate backends by name (default: all registered); missing ones are skipped with a warning.

    Raises:
        ValueError: an unknown name (lists the known ones).
    """
    known = available_annotators()
    out = []
    for name in names or known:
        if name not in _REGISTRY:
            raise ValueError(f"unknown annotator {name!r}; choose from {', '.join(known)}")
        try:
            out.append(_REGISTRY[name]())
        except (ImportError, FileNotFoundError) as err:
            log.warning("annotator %s skipped: %s", name, err)
    return out


def merge(
    outputs: list[tuple[Annotator, dict[str, AttributeValue]]], override_margin: float = 0.25
) -> dict[str, dict[str, Any]]:
    """Merge backend outputs into record attributes.

    Args:
        outputs: ``(annotator, predictions)`` in priority order (first = most trusted).
        override_margin: a lower-priority prediction replaces a higher one only if its confidence is larger by
            at least this much.

    Returns:
        name -> ``{"value", "confidence", "annotator"}`` (values checked against the taxonomy).
    """
    merged: dict[str, dict[str, Any]] = {}
    for annotator, preds in outputs:
        for name, pred in preds.items():
            value = pred.value.item() if isinstance(pred.value, np.generic) else pred.value  # numpy bool -> bool
            check_value(name, value)
            conf = float(min(1.0, max(0.0, pred.confidence)))
            old = merged.get(name)
            if old is None or conf >= old["confidence"] + override_margin:
                merged[name] = {"value": value, "confidence": round(conf, 4), "annotator": tag(annotator)}
    return merged


RULES_TAG = "rules@1"
_HAIR_ATTRS = ("hair_color", "hair_length", "hair_type", "bangs")


def harmonise(attrs: dict[str, dict[str, Any]], sure: float = 0.8) -> dict[str, dict[str, Any]]:
    """Make merged attributes consistent with each other (in place; returns ``attrs``).

    Rules ([INF]): a confidently female face or a child has no beard, moustache, goatee or stubble; sunglasses
    imply glasses; a bald head has no hair colour, length, type or bangs; a laugh implies a smile. Values set by
    a rule are tagged ``rules@1`` and keep the confidence of the attribute that triggered them.
    """

    def val(name: str) -> Any:
        return attrs.get(name, {}).get("value")

    def conf(name: str) -> float:
        return attrs.get(name, {}).get("confidence", 0.0)

    for trigger, ok in (("gender", val("gender") == "female"), ("age", val("age") == "child")):
        if ok and conf(trigger) >= sure:
            for name in ("beard", "mustache", "goatee", "five_o_clock_shadow"):
                if val(name) is True:
                    attrs[name] = {"value": False, "confidence": conf(trigger), "annotator": RULES_TAG}
    if val("sunglasses") is True and val("eyeglasses") is False:
        attrs["eyeglasses"] = {"value": True, "confidence": conf("sunglasses"), "annotator": RULES_TAG}
    if val("bald") is True:
        for name in _HAIR_ATTRS:
            attrs.pop(name, None)
    if val("laugh") is True and val("smile") is False:
        attrs["smile"] = {"value": True, "confidence": conf("laugh"), "annotator": RULES_TAG}
    return attrs


def tag(annotator: Annotator) -> str:
    """``name@version``."""
    return f"{annotator.name}@{annotator.version}"


def face_info(image: Image.Image, analyzer: Any | None) -> FaceInfo:
    """Detect the largest face and its landmarks (dlib) once for all annotators.

    Aligned crops where the HOG detector finds nothing get the canonical FFHQ face box for the image size, and
    landmarks are fitted inside it.
    """
    rgb = np.asarray(image.convert("RGB"))  # (H, W, 3)
    if analyzer is None:
        return FaceInfo(rgb)
    faces = analyzer.detect(image)
    if faces:
        return FaceInfo(rgb, faces[0].landmarks, faces[0].box)
    h, w = rgb.shape[:2]
    box = (round(0.22 * w), round(0.30 * h), round(0.78 * w), round(0.86 * h))  # FFHQ-aligned face area [INF]
    return FaceInfo(rgb, analyzer.landmarks(image, box), box, {"detected": False})


def annotate_records(
    records_file: str | Path,
    annotators: list[Annotator],
    *,
    redo: bool = False,
    save_every: int = 50,
    progress: bool = True,
) -> dict[str, int]:
    """Annotate every record of a records file (resumable; the file is rewritten atomically).

    A record counts as done when ``provenance["annotators"]`` already lists every backend's ``name@version``;
    ``redo`` annotates everything again.

    Args:
        records_file: ``.jsonl`` / ``.json`` / ``.parquet`` records (image paths relative to its folder).
        annotators: backends in priority order (see :func:`build_annotators`).
        redo: ignore earlier annotations.
        save_every: rewrite the file after this many newly annotated records.
        progress: show a progress bar.

    Returns:
        ``{"annotated", "skipped", "no_face"}`` counts.

    Raises:
        ValueError: no annotator was given.
    """
    from tqdm import tqdm

    from unif2ace.data.records import read_records, write_records

    if not annotators:
        raise ValueError("no annotator available; install the [data] extra and requirements/data-nodeps.txt")
    records_file = Path(records_file)
    records = read_records(records_file)
    tags = [tag(a) for a in annotators]
    analyzer = _analyzer()
    counts = {"annotated": 0, "skipped": 0, "no_face": 0}
    pending = 0
    for rec in tqdm(records, desc="annotate", disable=not progress):
        if not redo and rec.provenance.get("annotators") == tags:
            counts["skipped"] += 1
            continue
        with Image.open(records_file.parent / rec.image) as img:
            image = img.convert("RGB")
        face = face_info(image, analyzer)
        counts["no_face"] += face.extras.get("detected", True) is False
        outputs = [(a, a.annotate(image, face)) for a in annotators]
        rec.attributes = {**{k: v for k, v in rec.attributes.items() if k not in TAXONOMY}, **harmonise(merge(outputs))}
        rec.provenance = {**rec.provenance, "annotators": tags}
        counts["annotated"] += 1
        pending += 1
        if pending >= save_every:
            write_records(records_file, records)
            pending = 0
    write_records(records_file, records)
    return counts


def _analyzer() -> Any | None:
    try:
        from unif2ace.data.annotation.landmarks import LandmarkAnalyzer

        return LandmarkAnalyzer()
    except (ImportError, FileNotFoundError) as err:
        log.warning("no dlib landmarks (%s); landmark-based annotators will see no face", err)
        return None
