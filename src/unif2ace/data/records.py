"""UniF²aceD-style records (spec §7.3): one face image with caption, attributes, VQA, split and provenance.

Stored as JSONL (one record per line), a JSON list, or Parquet; image paths are relative to the records file's
folder. :func:`write_shards` packs records with their image bytes into WebDataset-style tar shards
(``<key>.png`` + ``<key>.json`` per sample, consecutive members). The format is plain POSIX tar, so the standard
library's ``tarfile`` writes and reads it and the ``webdataset`` package can stream it without being a dependency
of ours. Validation errors are one line naming the record id (or line number) and the field.
"""

from __future__ import annotations

import io
import json
import math
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from unif2ace.utils.io import atomic_path, atomic_write_text

SPLITS = ("train", "val", "test")
_STRING_FIELDS = ("source", "caption", "split", "identity")
_CONTAINER_FIELDS = (("attributes", dict), ("vqa", list), ("provenance", dict))
_ATTRIBUTE_KEYS = {"value", "confidence", "annotator"}


class RecordError(ValueError):
    """A malformed record; the message names the record and the field."""


@dataclass
class FaceRecord:
    """One face.

    Attributes:
        id: unique id.
        image: image path relative to the records file's folder.
        source: where the image came from (``synth``, ``ffhq``, ``celebahq``, ``folder``, ``unif2aced`` ...).
        caption: fine-grained caption ("" until captioned).
        attributes: name -> ``{"value": ..., "confidence": float in [0, 1], "annotator": "name@version"}``.
        vqa: ``[{"q": str, "a": str, "kind": str}, ...]``.
        split: ``train`` | ``val`` | ``test``.
        identity: identity key (splits never share one; "" = the record is its own identity).
        provenance: free-form facts (seed, generator, original path, annotator versions ...).
    """

    id: str
    image: str
    source: str = "unknown"
    caption: str = ""
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    vqa: list[dict[str, str]] = field(default_factory=list)
    split: str = "train"
    identity: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)

    @property
    def identity_key(self) -> str:
        """The identity used for splitting: ``identity``, or the record id when it has none."""
        return self.identity or self.id

    @classmethod
    def from_dict(cls, data: Any, where: str = "record") -> FaceRecord:
        """Validate and build a record.

        Args:
            data: the decoded JSON object.
            where: location used in error messages (e.g. ``records.jsonl line 3``).

        Raises:
            RecordError: missing / wrongly typed field, unknown key or split (names ``where``, the id and the field).
        """
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
        rid = data.get("id")
        who = f"{where} (id {rid!r})" if rid is not None else where
        for key in ("id", "image"):
            if not isinstance(data.get(key), str) or not data.get(key):
                raise RecordError(f"{who}: field '{key}' must be a non-empty string")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise RecordError(f"{who}: unknown field(s) {', '.join(sorted(unknown))}")
        for key in _STRING_FIELDS:
            if key in data and not isinstance(data[key], str):
                raise RecordError(f"{who}: field '{key}' must be a string, got {type(data[key]).__name__}")
        for key, kind in _CONTAINER_FIELDS:
            if key in data and not isinstance(data[key], kind):
                raise RecordError(f"{who}: field '{key}' must be a {kind.__name__}, got {type(data[key]).__name__}")
        if data.get("split", "train") not in SPLITS:
            raise RecordError(f"{who}: field 'split' must be one of {', '.join(SPLITS)}, got {data['split']!r}")
        for name, attr in data.get("attributes", {}).items():
            _check_attribute(who, name, attr)
        for i, qa in enumerate(data.get("vqa", [])):
            if not isinstance(qa, dict) or not isinstance(qa.get("q"), str) or not isinstance(qa.get("a"), str):
                raise RecordError(f"{who}: field 'vqa[{i}]' must be an object with string 'q' and 'a'")
            if not isinstance(qa.get("kind", ""), str) or set(qa) - {"q", "a", "kind"}:
                raise RecordError(f"{who}: field 'vqa[{i}]' may only hold string 'q', 'a' and 'kind'")
        return cls(**data)


def _check_attribute(who: str, name: str, attr: Any) -> None:
    where = f"{who}: field 'attributes.{name}'"
    if not isinstance(attr, dict) or "value" not in attr:
        raise RecordError(f"{where} must be an object with a 'value'")
    if set(attr) - _ATTRIBUTE_KEYS:
        raise RecordError(f"{where} has unknown key(s) {', '.join(sorted(set(attr) - _ATTRIBUTE_KEYS))}")
    conf = attr.get("confidence")
    if conf is not None and (
        isinstance(conf, bool) or not isinstance(conf, (int, float)) or not math.isfinite(conf) or not 0 <= conf <= 1
    ):
        raise RecordError(f"{where}: 'confidence' must be a number in [0, 1], got {conf!r}")
    if not isinstance(attr.get("annotator", ""), str):
        raise RecordError(f"{where}: 'annotator' must be a string")


def iter_rows(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Raw rows of a ``.jsonl`` / ``.json`` (a list) / ``.parquet`` file, each with its location for messages.

    A JSONL line that is not valid JSON is yielded as a :class:`RecordError` instead of a row, so callers can
    report it and go on.

    Raises:
        FileNotFoundError: no such file.
        RecordError: a ``.json`` file that is not a list of objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"records file not found: {path}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path.name} row {i}", _from_parquet(row)
    elif path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise RecordError(f"{path.name}: expected a JSON list of records, got {type(data).__name__}")
        for i, row in enumerate(data):
            yield f"{path.name} item {i}", row
    else:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path.name} line {lineno}", json.loads(line)
                except json.JSONDecodeError as err:
                    yield (
                        f"{path.name} line {lineno}",
                        RecordError(f"{path.name} line {lineno}: not valid JSON ({err.msg})"),
                    )


def parse_records(path: str | Path) -> tuple[list[FaceRecord], list[str]]:
    """Read every valid record and collect a one-line message for every invalid one (lenient).

    Returns:
        ``(records, problems)``.
    """
    records, problems = [], []
    for where, row in iter_rows(path):
        try:
            if isinstance(row, RecordError):
                raise row
            records.append(FaceRecord.from_dict(row, where))
        except RecordError as err:
            problems.append(str(err))
    return records, problems


def read_records(path: str | Path) -> list[FaceRecord]:
    """Read ``.jsonl`` / ``.json`` (a list) / ``.parquet`` records (strict).

    Raises:
        FileNotFoundError: no such file.
        RecordError: the first malformed line or record (names the line / id and the field).
    """
    records, problems = parse_records(path)
    if problems:
        more = f" (and {len(problems) - 1} more; run `unif2ace data validate`)" if len(problems) > 1 else ""
        raise RecordError(problems[0] + more)
    return records


def write_records(path: str | Path, records: Iterable[FaceRecord]) -> None:
    """Write records atomically as JSONL, or Parquet for a ``.parquet`` path."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [_to_parquet(r) for r in records]
        schema = pa.schema([(name, pa.string()) for name in FaceRecord.__dataclass_fields__])
        table = pa.Table.from_pylist(rows, schema=schema)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return
    atomic_write_text(path, "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records))


_JSON_COLUMNS = ("attributes", "vqa", "provenance")


def _to_parquet(record: FaceRecord) -> dict[str, Any]:
    row = record.to_dict()
    for key in _JSON_COLUMNS:  # nested, heterogeneous values: stored as JSON text columns
        row[key] = json.dumps(row[key], ensure_ascii=False)
    return row


def _from_parquet(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json.loads(v) if k in _JSON_COLUMNS and isinstance(v, str) else v for k, v in row.items()}


def shard_key(record_id: str) -> str:
    """Tar member stem for a record: WebDataset splits keys at the first dot, so only ``[A-Za-z0-9_-]`` is kept."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", record_id)


def write_shards(
    records: list[FaceRecord], root: str | Path, out: str | Path, shard_size: int = 1000, prefix: str = "faces"
) -> list[Path]:
    """Pack records and their image bytes into ``out/<prefix>-000000.tar`` ... (WebDataset layout).

    Each sample is ``<key>.<image extension>`` (the file's bytes, unchanged) followed by ``<key>.json`` (the
    record, with ``image`` set to the member name). Tar headers carry no time or owner, so shards are
    byte-reproducible; each shard is written atomically.

    Args:
        records: records to pack, in order.
        root: folder the records' relative image paths start from (the records file's folder).
        out: output folder.
        shard_size: samples per shard.
        prefix: shard file name prefix.

    Returns:
        The shard paths.

    Raises:
        FileNotFoundError: an image is missing (names the record).
        ValueError: two record ids map to the same key, or ``shard_size < 1``.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    keys = [shard_key(r.id) for r in records]
    if len(set(keys)) != len(keys):
        raise ValueError("record ids collide after sanitising to shard keys; make ids unique in [A-Za-z0-9_-]")
    root, paths = Path(root), []
    for start in range(0, len(records), shard_size):
        path = Path(out) / f"{prefix}-{start // shard_size:06d}.tar"
        with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            chunk = range(start, min(start + shard_size, len(records)))
            for record, key in ((records[i], keys[i]) for i in chunk):
                image = root / record.image
                if not image.is_file():
                    raise FileNotFoundError(f"record {record.id!r}: image file missing: {image}")
                member = f"{key}{image.suffix.lower() or '.png'}"
                meta = {**record.to_dict(), "image": member}
                _add_member(tar, member, image.read_bytes())
                _add_member(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False).encode())
        paths.append(path)
    return paths


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def read_shards(paths: Iterable[str | Path]) -> Iterator[tuple[FaceRecord, bytes]]:
    """Yield ``(record, image bytes)`` from shards written by :func:`write_shards` (records validated).

    Raises:
        RecordError: a sample without both an image and a ``.json`` member, or a malformed record.
    """
    for path in paths:
        samples: dict[str, dict[str, bytes]] = {}
        with tarfile.open(path, "r") as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
        for key, parts in samples.items():
            images = [ext for ext in parts if ext != "json"]
            if "json" not in parts or len(images) != 1:
                raise RecordError(f"{Path(path).name} sample {key!r}: needs one image and one .json member")
            record = FaceRecord.from_dict(json.loads(parts["json"]), f"{Path(path).name} sample {key!r}")
            yield record, parts[images[0]]
