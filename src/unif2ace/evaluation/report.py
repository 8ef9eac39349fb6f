"""Attribute-group breakdowns (bias audit), ``report.md`` rendering and the report's plots.

Groups (spec §9 reviewer concern: bias across age, gender, skin tone) come from each record's attributes:
age band (``under 20`` = child/teen, ``20-39`` = young adult, ``40-59`` = middle-aged, ``60+`` = senior), gender,
skin tone. Generation metrics are grouped by the record whose caption was the prompt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GROUP_KEYS", "record_groups", "breakdown", "render_markdown", "plot_breakdown", "plot_samples"]

GROUP_KEYS = ("age_band", "gender", "skin_tone")
AGE_BANDS = {"child": "under 20", "teen": "under 20", "young_adult": "20-39", "middle_aged": "40-59", "senior": "60+"}


def record_groups(record: Mapping[str, Any]) -> dict[str, str]:
    """``{"age_band", "gender", "skin_tone"}`` of a record (``unknown`` where the attribute is missing)."""
    attrs = record.get("attributes") or {}

    def val(name: str) -> Any:
        entry = attrs.get(name)
        return entry.get("value") if isinstance(entry, Mapping) else entry

    return {
        "age_band": AGE_BANDS.get(val("age"), "unknown"),
        "gender": val("gender") or "unknown",
        "skin_tone": val("skin_tone") or "unknown",
    }


def _mean(values: Sequence[float]) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def breakdown(
    per_item: Mapping[str, Mapping[str, float | None]],
    groups: Mapping[str, Mapping[str, str]],
    corpus: Callable[[list[str]], Mapping[str, float]] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Per-group metric means.

    Args:
        per_item: item id -> metric -> value (None / nan = not defined for that item).
        groups: item id -> :func:`record_groups`.
        corpus: optional ``corpus(ids) -> metrics`` recomputed on each group's subset (BLEU, CIDEr, FID...).

    Returns:
        ``{group_key: {group_value: {"n": count, metric: mean, ...}}}``.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key in GROUP_KEYS:
        members: dict[str, list[str]] = {}
        for rid in per_item:
            members.setdefault(groups[rid][key], []).append(rid)
        table = {}
        for value, ids in sorted(members.items()):
            names = sorted({m for rid in ids for m in per_item[rid]})
            row: dict[str, float] = {"n": len(ids)}
            row.update({m: _mean([per_item[rid].get(m) for rid in ids]) for m in names})
            if corpus is not None:
                row.update(corpus(ids))
            table[value] = row
        out[key] = table
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _table(rows: Mapping[str, Mapping[str, Any]], first: str) -> list[str]:
    cols = sorted({c for r in rows.values() for c in r}, key=lambda c: (c != "n", c))
    lines = [f"| {first} | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    lines += [
        f"| {name} | " + " | ".join(_fmt(r.get(c, float("nan"))) for c in cols) + " |" for name, r in rows.items()
    ]
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """The human-readable report: recipe, headline metrics, skipped backends, per-group tables, plots."""
    r = report["recipe"]
    lines = [
        f"# Evaluation report: {report['model']['name']}",
        "",
        f"- model hash: `{report['model']['hash']}`",
        f"- data: `{report['data']['records']}` split `{report['data']['split']}`, {report['data']['num_records']} "
        f"records; mode {'quick' if report['quick'] else 'full'}",
        f"- sampling recipe: seed {r['seed']}, steps {r['steps']}, guidance {r['guidance_scale']}, "
        f"{len(r['prompts'])} prompts (sha256 `{r['prompts_sha256'][:16]}…`), caption seed {r['seed']}",
        f"- wall time: {report['wall_time_s']:.0f} s on {report['device']}",
        "",
        "## Headline metrics",
        "",
        "| section | metric | value |",
        "|---|---|---|",
    ]
    for section in ("generation", "understanding", "edits"):
        for name, value in (report.get(section) or {}).get("metrics", {}).items():
            lines.append(f"| {section} | {name} | {_fmt(value)} |")
    if report.get("skipped"):
        lines += ["", "## Skipped", ""] + [f"- {s}" for s in report["skipped"]]
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {s}" for s in report["notes"]]
    for section in ("generation", "understanding", "edits"):
        groups = (report.get(section) or {}).get("groups")
        if not groups:
            continue
        lines += ["", f"## {section.capitalize()} by attribute group", ""]
        for key, rows in groups.items():
            lines += [f"### {key}", "", *_table(rows, key), ""]
    if report.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in report["plots"]]
    return "\n".join(lines) + "\n"


def plot_breakdown(report: Mapping[str, Any], metric_pairs: Sequence[tuple[str, str]], out_png: Path) -> Path | None:
    """Bar charts of selected ``(section, metric)`` per attribute group (one row per metric, one column per key)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    def defined(section: str, metric: str) -> bool:
        tables = (report.get(section) or {}).get("groups") or {}
        values = [row.get(metric, float("nan")) for t in tables.values() for row in t.values()]
        return any(v is not None and not math.isnan(v) for v in values)

    pairs = [(s, m) for s, m in metric_pairs if defined(s, m)]
    if not pairs:
        return None
    fig, axes = plt.subplots(len(pairs), 3, figsize=(10, 2.4 * len(pairs)), dpi=100, squeeze=False)
    for row, (section, metric) in enumerate(pairs):
        for col, key in enumerate(("age_band", "gender", "skin_tone")):
            ax = axes[row][col]
            table = report[section]["groups"].get(key, {})
            names = list(table)
            vals = [table[n].get(metric, float("nan")) for n in names]
            ax.bar(range(len(names)), [0 if math.isnan(v) else v for v in vals], color="#4c72b0")
            ax.set_xticks(range(len(names)), [f"{n}\n(n={table[n]['n']})" for n in names], fontsize=7)
            ax.set_title(f"{metric} by {key}", fontsize=8)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


def plot_samples(images: Sequence[Any], titles: Sequence[str], out_png: Path, cols: int = 6) -> Path:
    """A grid of generated faces with their (shortened) prompts."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = max(1, math.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 2.1 * rows), dpi=100, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i])
            ax.set_title(titles[i][:28] + ("…" if len(titles[i]) > 28 else ""), fontsize=6)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
