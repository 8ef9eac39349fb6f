"""Import caption / VQA datasets from local disk (UniF²aceD-1M, LLaVA-style JSON / JSONL / Parquet) as FaceRecords.

Spec §7.1/§7.3: UniF²aceD-1M pairs each face with one fine-grained caption and ~7.7 VQA pairs. Its released file
layout is not documented in our sources, so the reader is driven by a column mapping: every target field is read
from the first present column of a list of common spellings, or from a dotted path given with ``--map`` (for
example ``caption=conversations.1.value``). LLaVA conversations (``[{"from": "human"|"gpt", "value"}]``) become
``{"q", "a", "kind"}`` pairs. The images are not copied; record paths point at them relative to the output folder.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from unif2ace.data.importer import ImportReport
from unif2ace.data.records import FaceRecord, write_records
from unif2ace.data.splits import assign_splits

_AUTO_COLUMNS = {  # target field -> candidate source columns, first present wins ([INF]: common spellings)
    "id": ("id", "image_id", "uid"),
    "image": ("image", "image_path", "img", "file_name", "filename", "file", "path"),
    "caption": ("caption", "refined_caption", "description", "text"),
    "vqa": ("vqa", "qa", "qas", "conversations"),
    "identity": ("identity", "person_id", "celeb_id"),
    "split": ("split",),
}


def parse_mapping(items: list[str] | None) -> dict[str, str]:
    """``["caption=conversations.1.value", ...]`` -> ``{"caption": "conversations.1.value"}`` (empty value = unset).

    Raises:
        ValueError: an item without ``=`` or an unknown target field.
    """
    mapping = {}
    for item in items or []:
        target, sep, path = item.partition("=")
        if not sep or target not in _AUTO_COLUMNS:
            raise ValueError(f"--map {item!r}: expected FIELD=PATH with FIELD one of {', '.join(_AUTO_COLUMNS)}")
        mapping[target] = path
    return mapping


def lookup(row: Any, path: str) -> Any:
    """Value at a dotted path with list indices (``conversations.1.value``); None if any step is missing."""
    for step in path.split(".") if path else []:
        if isinstance(row, dict):
            row = row.get(step)
        elif isinstance(row, list) and step.lstrip("-").isdigit() and -len(row) <= int(step) < len(row):
            row = row[int(step)]
        else:
            return None
    return row


def to_vqa(value: Any) -> list[dict[str, str]]:
    """Normalise QA lists: ``[{"q","a"}]``, ``[{"question","answer"}]`` or LLaVA turns ``[{"from","value"}]``.

    Yes/no answers get ``kind`` ``yesno``, others ``open`` (unless a kind is given); the ``<image>`` tag is removed.
    """
    if not isinstance(value, list):
        return []
    if value and all(isinstance(t, dict) and "from" in t and "value" in t for t in value):
        turns = [(t["from"], _clean(t["value"])) for t in value]  # human / gpt alternating
        pairs = [(q, a) for (who_q, q), (who_a, a) in zip(turns, turns[1:], strict=False) if who_q == "human" != who_a]
        value = [{"q": q, "a": a} for q, a in pairs]
    out = []
    for qa in value:
        if not isinstance(qa, dict):
            continue
        q, a = qa.get("q", qa.get("question")), qa.get("a", qa.get("answer"))
        if isinstance(q, str) and isinstance(a, str):
            kind = qa.get("kind") or ("yesno" if re.match(r"(yes|no)\b", a.strip().lower()) else "open")
            out.append({"q": _clean(q), "a": a.strip(), "kind": str(kind)})
    return out


def _clean(text: Any) -> str:
    return str(text).replace("<image>", "").strip()


def _read_rows(path: Path) -> list[Any]:
    if not path.is_file():
        raise FileNotFoundError(f"records file not found: {path}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):  # {"annotations": [...]} and similar single-list wrappers
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else [data]
        return data
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                rows.append(ValueError(f"line {lineno}: not valid JSON ({err.msg})"))
    return rows


def import_records(
    src: str | Path,
    out: str | Path,
    mapping: dict[str, str] | None = None,
    images_root: str | Path | None = None,
    source: str = "unif2aced",
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
) -> ImportReport:
    """Convert a JSON / JSONL / Parquet caption-VQA dataset into ``out/records.jsonl``.

    Column mapping: each target field (id, image, caption, vqa, identity, split) is read from the first present
    column of :data:`_AUTO_COLUMNS`, or from the dotted path given in ``mapping``. Rows sharing an id are
    merged (first caption, VQA lists concatenated). Rows without a usable image are reported and skipped.
    Images stay where they are; record paths are made relative to ``out``.

    Args:
        src: the dataset file.
        out: output folder.
        mapping: target field -> dotted source path (see :func:`parse_mapping`).
        images_root: folder image paths are relative to (default: ``src``'s folder).
        source: the records' ``source``.
        val: validation fraction of identities (rows without a valid ``split``).
        test: test fraction of identities.
        seed: split seed.

    Returns:
        The report.
    """
    src, out = Path(src), Path(out)
    root = Path(images_root) if images_root else src.parent
    report, merged, has_split = ImportReport(), {}, set()
    for i, row in enumerate(_read_rows(src)):
        where = f"{src.name} row {i}"
        if isinstance(row, Exception) or not isinstance(row, dict):
            report.skipped.append((where, str(row) if isinstance(row, Exception) else "not a JSON object"))
            continue
        get = {k: _field(row, k, mapping or {}) for k in _AUTO_COLUMNS}
        image = root / str(get["image"]) if get["image"] else None
        if image is None or not image.is_file():
            report.skipped.append((where, f"image missing: {image}" if image else "no image (use --map image=PATH)"))
            continue
        rid = str(get["id"]) if get["id"] not in (None, "") else image.stem
        if rid not in merged:
            merged[rid] = FaceRecord(
                id=rid,
                image=os.path.relpath(image.resolve(), out.resolve()),
                source=source,
                identity=str(get["identity"] or ""),
                provenance={"row": where, "file": str(src)},
            )
            if get["split"] in ("train", "val", "test"):
                merged[rid].split = get["split"]
                has_split.add(rid)
        merged[rid].caption = merged[rid].caption or _clean(get["caption"] or "")
        merged[rid].vqa += to_vqa(get["vqa"])
    report.records = list(merged.values())
    assign_splits([r for r in report.records if r.id not in has_split], val, test, seed=seed)
    write_records(out / "records.jsonl", report.records)
    return report


def _field(row: dict[str, Any], target: str, mapping: dict[str, str]) -> Any:
    if target in mapping:
        return lookup(row, mapping[target])
    return next((row[c] for c in _AUTO_COLUMNS[target] if row.get(c) not in (None, "")), None)
