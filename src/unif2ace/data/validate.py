"""``unif2ace data validate``: every problem of a records file, each named by its record id.

Checks (spec §7.3 record format): schema of every record (all bad records are reported, not just the first),
image files missing or undecodable (the same loader training uses, :func:`unif2ace.utils.images.load_image`),
duplicate ids, duplicate images (identical decoded pixels), and identities that appear in more than one split
(train/val/test leakage).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from unif2ace.data.records import FaceRecord, RecordError, parse_records
from unif2ace.utils.images import load_image


def validate_records(path: str | Path, check_images: bool = True, workers: int = 4) -> list[str]:
    """Check a records file and return one line per problem.

    Args:
        path: records file (JSONL / JSON / Parquet).
        check_images: open and decode every image.
        workers: threads decoding images.

    Returns:
        One message per problem, each naming the record id(s) (empty = valid).
    """
    path = Path(path)
    try:
        records, problems = parse_records(path)
    except (RecordError, FileNotFoundError) as err:
        return [str(err)]
    if check_images:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            checked = list(pool.map(lambda r: _check_image(path.parent, r), records))
        problems += [problem for problem, _ in checked if problem]
        by_pixels: dict[str, list[str]] = defaultdict(list)
        for rec, (_, digest) in zip(records, checked, strict=True):
            if digest:
                by_pixels[digest].append(rec.id)
        problems += [
            f"records {', '.join(map(repr, rids))}: identical image content (duplicate images)"
            for rids in by_pixels.values()
            if len(rids) > 1
        ]
    counts: dict[str, int] = defaultdict(int)
    for rec in records:
        counts[rec.id] += 1
    problems += [f"record {rid!r}: duplicate id ({n} records)" for rid, n in counts.items() if n > 1]
    return problems + _leakage(records)


def _leakage(records: list[FaceRecord]) -> list[str]:
    """One message per identity found in several splits, naming the records outside its majority split."""
    by_identity: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        by_identity[rec.identity_key][rec.split].append(rec.id)
    problems = []
    for identity, splits in by_identity.items():
        if len(splits) < 2:
            continue
        majority = max(splits, key=lambda s: (len(splits[s]), s == "train"))
        others = [f"{rid!r} ({split})" for split, rids in sorted(splits.items()) if split != majority for rid in rids]
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        problems.append(
            f"records {shown}: identity {identity!r} also in split {majority!r} ({', '.join(sorted(splits))}) - leakage"
        )
    return problems


def _check_image(root: Path, rec: FaceRecord) -> tuple[str | None, str | None]:
    """``(problem, pixel digest)`` of a record's image; the digest covers size and decoded RGB pixels."""
    file = Path(rec.image) if Path(rec.image).is_absolute() else root / rec.image
    if not file.is_file():
        return f"record {rec.id!r}: image file missing: {file}", None
    try:
        img = load_image(file)
    except ValueError as err:
        return (
            f"record {rec.id!r}: image {file.name} is corrupt or unusable: {str(err).removeprefix(f'{file}: ')}",
            None,
        )
    digest = hashlib.sha256(f"{img.width}x{img.height}".encode() + img.tobytes()).hexdigest()
    return None, digest
