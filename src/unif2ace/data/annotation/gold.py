"""Gold-set evaluation: annotator accuracy per attribute against labels made by looking at the faces.

``data/gold/labels.jsonl`` holds one ``{"id", "labels": {gold name: value or null}}`` per face of the in-repo
mini corpus (``null`` = the labeller could not tell; left out). The annotators' thresholds were calibrated on
even-indexed faces, so we report the odd-indexed *held-out* half next to all faces. An attribute is **reliable**
when its held-out balanced accuracy (mean recall over the gold classes, so a constant guess scores
``1 / classes``) is at least :data:`RELIABLE_AT`; unreliable attributes are kept in the records (with their
confidences) but left out of captions and VQA (:data:`unif2ace.data.annotation.reliability.UNRELIABLE`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from unif2ace.data.records import FaceRecord

RELIABLE_AT = 0.7
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


def evaluate(records: list[FaceRecord], gold: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-attribute scores of the records' annotations against the gold labels.

    Returns:
        attribute -> ``{"annotator", "n", "coverage", "accuracy", "balanced", "heldout_n", "heldout_accuracy",
        "heldout_balanced", "reliable"}`` (accuracies rounded to 3 decimals; a face without a prediction counts
        against ``coverage`` only).
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
        out[attr] = {
            "annotator": ",".join(sorted(tags)) or "none",
            "n": len(pairs),
            "coverage": round(len(pairs) / max(len(labelled), 1), 3),
            "accuracy": round(acc, 3),
            "balanced": round(bal, 3),
            "heldout_n": len(held),
            "heldout_accuracy": round(h_acc, 3),
            "heldout_balanced": round(h_bal, 3),
            "reliable": bool(pairs) and h_bal >= RELIABLE_AT,
        }
    return out


def markdown_table(scores: dict[str, dict[str, Any]]) -> str:
    """The scores as the Markdown table in ``docs/annotation.md``."""
    lines = [
        "| attribute | annotator | n | coverage | accuracy | balanced acc. | held-out n | held-out acc. "
        "| held-out balanced | reliable |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for attr, s in scores.items():
        cells = [attr, s["annotator"], s["n"], s["coverage"], s["accuracy"], s["balanced"], s["heldout_n"]]
        cells += [s["heldout_accuracy"], s["heldout_balanced"], "yes" if s["reliable"] else "no"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


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
