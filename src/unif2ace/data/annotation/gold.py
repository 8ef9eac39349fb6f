"""Gold-set evaluation: annotator accuracy per attribute against labels made by looking at the faces.

``data/gold/labels.jsonl`` holds one ``{"id", "labels": {gold name: value or null}}`` per face of the in-repo
mini corpus (``null`` = the labeller could not tell; left out). The annotators' thresholds were calibrated on
even-indexed faces, so we report the odd-indexed *held-out* half next to all faces. An attribute is **reliable**
when its held-out balanced accuracy (mean recall over the gold classes, so a constant guess scores
``1 / classes``) is at least :data:`RELIABLE_AT`; unreliable attributes are kept in the records (with their
confidences) but left out of captions and VQA (:data:`unif2ace.data.annotation.reliability.UNRELIABLE`).
Balanced accuracy can hide a rare value that is mostly predicted wrongly (a beard predicted on 39 gold faces was
right on 9), and a caption states a *value*, so each value also gets its precision (how often the gold label
agrees when the annotator predicts it, over all gold faces): a value of a reliable attribute is stated only if
its precision is at least :data:`RELIABLE_AT` over at least :data:`MIN_SUPPORT` predictions
(:func:`unreliable_values`). Ordinal attributes (age, hair length, skin tone) also get a mean absolute error in
steps of their scale.
``unif2ace data gold`` writes the scores to ``data/gold/report.json``; the table is in ``docs/data.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from unif2ace.data.annotation.taxonomy import TAXONOMY
from unif2ace.data.records import FaceRecord
from unif2ace.utils.io import atomic_write_text

RELIABLE_AT = 0.7
"""Minimum held-out balanced accuracy of an attribute, and minimum precision of a value, to be stated."""
MIN_SUPPORT = 5
"""A value needs at least this many predictions on the gold set before its precision counts."""
GOLD_TO_TAXONOMY = {
    "gender": "gender", "age": "age", "smiling": "smile", "mouth_open": "mouth_open", "eyeglasses": "eyeglasses",
    "sunglasses": "sunglasses", "beard": "beard", "mustache": "mustache", "hat": "hat", "hair_color": "hair_color",
    "hair_length": "hair_length", "bangs": "bangs", "bald": "bald", "earrings": "earrings", "makeup": "makeup",
    "skin_tone": "skin_tone", "expression": "emotion",
}  # fmt: skip
"""Gold label name -> taxonomy attribute."""


def read_gold(path: str | Path) -> dict[str, dict[str, Any]]:
    """``id -> {taxonomy attribute: value}`` (unsure labels dropped).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown gold label name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gold labels not found: {path}")
    out = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        unknown = set(row["labels"]) - set(GOLD_TO_TAXONOMY)
        if unknown:
            raise ValueError(f"{path.name} id {row['id']}: unknown gold label(s) {sorted(unknown)}")
        out[row["id"]] = {GOLD_TO_TAXONOMY[k]: v for k, v in row["labels"].items() if v is not None}
    return out


def _scores(pairs: list[tuple[Any, Any]]) -> tuple[float, float]:
    """(accuracy, balanced accuracy) of ``(gold, predicted)`` pairs."""
    if not pairs:
        return float("nan"), float("nan")
    acc = sum(g == p for g, p in pairs) / len(pairs)
    classes = sorted({g for g, _ in pairs}, key=str)
    recalls = [sum(p == c for g, p in pairs if g == c) / sum(g == c for g, _ in pairs) for c in classes]
    return acc, sum(recalls) / len(recalls)


def _mae(attr: str, pairs: list[tuple[Any, Any]]) -> float | None:
    """Mean absolute error in steps of an ordinal attribute's scale (``None`` for other kinds or no pairs)."""
    values = TAXONOMY[attr].values
    if TAXONOMY[attr].kind != "ordinal" or not pairs:
        return None
    return round(sum(abs(values.index(g) - values.index(p)) for g, p in pairs) / len(pairs), 3)


def evaluate(records: list[FaceRecord], gold: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-attribute scores of the records' annotations against the gold labels.

    Returns:
        attribute -> ``{"annotator", "n", "coverage", "accuracy", "balanced", "mae", "heldout_n",
        "heldout_accuracy", "heldout_balanced", "heldout_mae", "reliable"}`` (accuracies rounded to 3 decimals,
        ``mae`` only for ordinal attributes; a face without a prediction counts against ``coverage`` only).
    """
    order = {rid: i for i, rid in enumerate(sorted(gold))}
    by_id = {r.id: r for r in records}
    out = {}
    for attr in GOLD_TO_TAXONOMY.values():
        labelled = [(rid, g[attr]) for rid, g in gold.items() if attr in g and rid in by_id]
        pairs, held, tags = [], [], set()
        for rid, value in labelled:
            pred = by_id[rid].attributes.get(attr)
            if pred is None:
                continue
            tags.add(pred.get("annotator", "").split("@")[0])
            pairs.append((value, pred["value"]))
            if order[rid] % 2 == 1:
                held.append((value, pred["value"]))
        acc, bal = _scores(pairs)
        h_acc, h_bal = _scores(held)
        values = {}
        for pred in sorted({p for _, p in pairs}, key=str):
            hits = [g == p for g, p in pairs if p == pred]
            values[str(pred)] = {"predicted": len(hits), "precision": round(sum(hits) / len(hits), 3)}
        out[attr] = {
            "annotator": ",".join(sorted(tags)) or "none",
            "n": len(pairs),
            "coverage": round(len(pairs) / max(len(labelled), 1), 3),
            "accuracy": round(acc, 3),
            "balanced": round(bal, 3),
            "mae": _mae(attr, pairs),
            "heldout_n": len(held),
            "heldout_accuracy": round(h_acc, 3),
            "heldout_balanced": round(h_bal, 3),
            "heldout_mae": _mae(attr, held),
            "reliable": bool(pairs) and h_bal >= RELIABLE_AT,
            "values": values,
        }
    return out


def unreliable_values(scores: dict[str, dict[str, Any]]) -> set[tuple[str, Any]]:
    """``(attribute, value)`` pairs of reliable attributes that captions must not state.

    A value is kept only if it was predicted at least :data:`MIN_SUPPORT` times on the gold set with precision
    at least :data:`RELIABLE_AT`; values never (or rarely) predicted there are unverified and left out too.
    """
    out = set()
    for attr, s in scores.items():
        if not s["reliable"]:
            continue
        for value in TAXONOMY[attr].values:
            v = s["values"].get(str(value))
            if v is None or v["predicted"] < MIN_SUPPORT or v["precision"] < RELIABLE_AT:
                out.add((attr, value))
    return out


def markdown_table(scores: dict[str, dict[str, Any]]) -> str:
    """The scores as the Markdown table in ``docs/data.md`` (``-`` where a score does not apply)."""
    lines = [
        "| attribute | annotator | n | coverage | accuracy | balanced acc. | MAE (steps) | held-out n "
        "| held-out acc. | held-out balanced | stated in captions |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    dropped = unreliable_values(scores) | {
        (a, v) for a, s in scores.items() if not s["reliable"] for v in TAXONOMY[a].values
    }
    for attr, s in scores.items():
        cells = [attr, s["annotator"], s["n"], s["coverage"], s["accuracy"], s["balanced"], s["mae"], s["heldout_n"]]
        kept = [str(v) for v in TAXONOMY[attr].values if (attr, v) not in dropped]
        cells += [s["heldout_accuracy"], s["heldout_balanced"], ("kept: " + ", ".join(kept)) if kept else "dropped"]
        lines.append("| " + " | ".join("-" if c is None or c != c else str(c) for c in cells) + " |")
    return "\n".join(lines)


def write_report(records: list[FaceRecord], gold_path: str | Path, out: str | Path) -> dict[str, Any]:
    """Evaluate ``records`` against the gold labels and write the report JSON atomically.

    Returns:
        ``{"gold", "faces", "reliable_at", "min_support", "metric", "attributes": evaluate(...), "unreliable":
        [attribute, ...], "unreliable_values": [[attribute, value], ...]}``.
    """
    gold = read_gold(gold_path)
    scores = evaluate(records, gold)
    report = {
        "gold": Path(gold_path).name,
        "faces": len(gold),
        "reliable_at": RELIABLE_AT,
        "min_support": MIN_SUPPORT,
        "metric": "held-out balanced accuracy (mean recall over gold classes), odd-indexed gold faces",
        "attributes": {k: {m: (None if v != v else v) for m, v in s.items()} for k, s in scores.items()},
        "unreliable": sorted(k for k, s in scores.items() if not s["reliable"]),
        "unreliable_values": sorted(([a, v] for a, v in unreliable_values(scores)), key=str),
    }
    atomic_write_text(out, json.dumps(report, indent=1) + "\n")
    return report


def contact_sheet(records: list[FaceRecord], root: str | Path, out: str | Path, cols: int = 4, side: int = 192) -> Path:
    """Write a PNG grid of the records' images with their index numbers (for labelling by eye).

    Args:
        records: up to ``cols * cols`` records (their list positions are printed).
        root: folder the records' image paths start from.
        out: PNG path.
        cols: grid columns (and rows).
        side: pixels per face.
    """
    sheet = Image.new("RGB", (cols * side, cols * side), "white")
    draw = ImageDraw.Draw(sheet)
    for k, rec in enumerate(records[: cols * cols]):
        with Image.open(Path(root) / rec.image) as img:
            face = img.convert("RGB").resize((side, side), Image.LANCZOS)
        x, y = (k % cols) * side, (k // cols) * side
        sheet.paste(face, (x, y))
        draw.rectangle([x, y, x + 40, y + 14], fill="black")
        draw.text((x + 2, y + 2), rec.id.rsplit("-", 1)[-1], fill="yellow")
    sheet.save(out)
    return Path(out)
