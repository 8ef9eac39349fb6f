"""``unif2ace data validate``: every problem of a records file, each named by its record id."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

from unif2ace.data.records import FaceRecord, RecordError, read_records


def validate_records(path: str | Path, check_images: bool = True) -> list[str]:
    """Check schema, images (missing / corrupt), duplicate ids and images, identity leakage across splits.

    Args:
        path: records file (JSONL / JSON / Parquet).
        check_images: open and decode every image.

    Returns:
        One message per problem (empty = valid).
    """
    path = Path(path)
    try:
        records = read_records(path)
    except (RecordError, FileNotFoundError) as err:
        return [str(err)]
    problems: list[str] = []
    ids: dict[str, int] = defaultdict(int)
    hashes: dict[str, list[str]] = defaultdict(list)
    splits: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        ids[rec.id] += 1
        splits[rec.identity or rec.id].add(rec.split)
        if check_images:
            problem, digest = _check_image(path.parent / rec.image, rec)
            if problem:
                problems.append(problem)
            elif digest:
                hashes[digest].append(rec.id)
    problems += [f"record {rid!r}: duplicate id ({n} records)" for rid, n in ids.items() if n > 1]
    problems += [
        f"records {', '.join(map(repr, rids))}: identical image content" for rids in hashes.values() if len(rids) > 1
    ]
    problems += [
        f"identity {ident!r}: appears in several splits ({', '.join(sorted(s))}) - leakage"
        for ident, s in splits.items()
        if len(s) > 1
    ]
    return problems


def _check_image(file: Path, rec: FaceRecord) -> tuple[str | None, str | None]:
    if not file.is_file():
        return f"record {rec.id!r}: image file missing: {file}", None
    from PIL import Image

    data = file.read_bytes()
    try:
        with Image.open(file) as im:
            im.load()
    except Exception as err:  # PIL raises many types for corrupt files
        return f"record {rec.id!r}: image {file.name} is corrupt ({type(err).__name__})", None
    return None, hashlib.sha256(data).hexdigest()
