"""``unif2ace data stats``: corpus statistics comparable to the UniF²aceD-1M table (spec §7.1).

The paper reports 120 caption tokens and 17.7 attributes per caption on average, and ~7.7 VQA pairs per image;
we report the same quantities (caption length in whitespace words, attributes and VQA pairs per record), per-split
and per-source counts, every attribute's value histogram and mean confidence, and the yes/no balance of VQA
answers (a skewed balance lets a model answer without looking). Plots use matplotlib's Agg backend.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from unif2ace.data.records import FaceRecord, read_records
from unif2ace.utils.io import atomic_path, atomic_write_json


def _yes_no(answer: str) -> str | None:
    match = re.match(r"\s*(yes|no)\b", answer.lower())
    return match.group(1) if match else None


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "p5": 0.0, "p95": 0.0, "max": 0.0}
    arr = np.asarray(values, dtype=np.float64)
    stats = {"mean": arr.mean(), "median": np.median(arr), "p5": np.percentile(arr, 5), "p95": np.percentile(arr, 95)}
    return {**{k: round(float(v), 3) for k, v in stats.items()}, "max": float(arr.max())}


def compute_stats(records: list[FaceRecord]) -> dict[str, Any]:
    """Corpus statistics as a JSON-able dict.

    Args:
        records: the corpus.

    Returns:
        ``{"records", "identities", "splits", "sources", "captions", "attributes", "vqa"}``.
    """
    captioned = [r for r in records if r.caption.strip()]
    values: dict[str, Counter] = defaultdict(Counter)
    confidences: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        for name, attr in rec.attributes.items():
            values[name][str(attr["value"])] += 1
            if isinstance(attr.get("confidence"), (int, float)):
                confidences[name].append(float(attr["confidence"]))
    yes_no: dict[str, Counter] = defaultdict(Counter)
    for qa in (qa for rec in records for qa in rec.vqa):
        answer = _yes_no(qa["a"])
        if answer:
            yes_no[qa.get("kind") or "unspecified"][answer] += 1
    total_yes = sum(c["yes"] for c in yes_no.values())
    total_no = sum(c["no"] for c in yes_no.values())
    return {
        "records": len(records),
        "identities": len({r.identity_key for r in records}),
        "splits": dict(sorted(Counter(r.split for r in records).items())),
        "sources": dict(sorted(Counter(r.source for r in records).items())),
        "captions": {
            "captioned": len(captioned),
            "words": _summary([len(r.caption.split()) for r in captioned]),
        },
        "attributes": {
            "per_record": _summary([len(r.attributes) for r in records]),
            "values": {name: dict(sorted(c.items())) for name, c in sorted(values.items())},
            "mean_confidence": {name: round(float(np.mean(v)), 4) for name, v in sorted(confidences.items())},
        },
        "vqa": {
            "pairs": sum(len(r.vqa) for r in records),
            "per_record": _summary([len(r.vqa) for r in records]),
            "kinds": dict(sorted(Counter(qa.get("kind") or "unspecified" for r in records for qa in r.vqa).items())),
            "yes_no": {kind: {"yes": c["yes"], "no": c["no"]} for kind, c in sorted(yes_no.items())},
            "yes_fraction": round(total_yes / (total_yes + total_no), 4) if total_yes + total_no else None,
        },
    }


def write_stats(records_file: str | Path, out: str | Path, plots: bool = True) -> dict[str, Any]:
    """Compute statistics of a records file; write ``out/stats.json`` and (optionally) the PNG plots.

    Args:
        records_file: records file (JSONL / JSON / Parquet).
        out: output folder.
        plots: also write ``attributes.png``, ``caption_length.png`` and ``yes_no.png``.

    Returns:
        The statistics dict.

    Raises:
        FileNotFoundError: the records file is missing, or matplotlib is not installed (with the install hint).
    """
    records = read_records(records_file)
    stats = compute_stats(records)
    out = Path(out)
    atomic_write_json(out / "stats.json", stats)
    if plots:
        _plot_all(records, stats, out)
    return stats


def _plot_all(records: list[FaceRecord], stats: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FileNotFoundError(
            "data stats plots need matplotlib: pip install -e '.[data]' (or pass --no-plots)"
        ) from None
    values = stats["attributes"]["values"]
    cols = max(1, min(6, len(values)))
    rows = max(1, -(-len(values) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False)
    for ax, (name, counts) in zip(axes.flat, values.items(), strict=False):
        ax.bar(list(counts), list(counts.values()), color="tab:blue")
        ax.set_title(name, fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=45)
    for ax in list(axes.flat)[len(values) :]:
        ax.axis("off")
    if not values:
        axes[0][0].text(0.5, 0.5, "no attributes yet", ha="center", va="center")
    _save(fig, out / "attributes.png", plt)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist([len(r.caption.split()) for r in records if r.caption.strip()], bins=30, color="tab:green")
    ax.set(xlabel="caption length (words)", ylabel="records", title=f"{stats['captions']['captioned']} captions")
    _save(fig, out / "caption_length.png", plt)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    kinds = stats["vqa"]["yes_no"]
    x = np.arange(len(kinds))
    ax.bar(x - 0.2, [c["yes"] for c in kinds.values()], 0.4, label="yes")
    ax.bar(x + 0.2, [c["no"] for c in kinds.values()], 0.4, label="no")
    ax.set_xticks(x, list(kinds), rotation=30, fontsize=8)
    ax.set(ylabel="answers", title=f"yes/no answers (yes fraction {stats['vqa']['yes_fraction']})")
    ax.legend()
    _save(fig, out / "yes_no.png", plt)


def _save(fig, path: Path, plt) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
