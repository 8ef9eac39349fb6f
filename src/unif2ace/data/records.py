"""UniF²aceD-style records (spec §7.3): one face image with caption, attributes, VQA, split and provenance.

Stored as JSONL (one record per line) or Parquet; image paths are relative to the records file's folder.
Validation errors are one line naming the record id (or line number) and the field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from unif2ace.utils.io import atomic_path, atomic_write_text

SPLITS = ("train", "val", "test")


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
        attributes: name -> ``{"value": ..., "confidence": float, "annotator": "name@version"}``.
        vqa: ``[{"q": str, "a": str, "kind": str}, ...]``.
        split: ``train`` | ``val`` | ``test``.
        identity: identity key (splits never share one).
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

    @classmethod
    def from_dict(cls, data: Any, where: str = "record") -> FaceRecord:
        """Validate and build a record.

        Raises:
            RecordError: missing / wrongly typed field, unknown key or split (names ``where`` and the field).
        """
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
        rid = data.get("id")
        who = f"{where} (id {rid!r})" if rid is not None else where
        for key, kind in (("id", str), ("image", str)):
            if not isinstance(data.get(key), kind) or not data.get(key):
                raise RecordError(f"{who}: field '{key}' must be a non-empty string")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise RecordError(f"{who}: unknown field(s) {', '.join(sorted(unknown))}")
        for key, kind in (
            ("source", str),
            ("caption", str),
            ("split", str),
            ("identity", str),
            ("attributes", dict),
            ("vqa", list),
            ("provenance", dict),
        ):
            if key in data and not isinstance(data[key], kind):
                raise RecordError(f"{who}: field '{key}' must be a {kind.__name__}")
        if data.get("split", "train") not in SPLITS:
            raise RecordError(f"{who}: field 'split' must be one of {', '.join(SPLITS)}, got {data['split']!r}")
        for name, attr in data.get("attributes", {}).items():
            if not isinstance(attr, dict) or "value" not in attr:
                raise RecordError(f"{who}: attribute '{name}' must be an object with a 'value'")
        for i, qa in enumerate(data.get("vqa", [])):
            if not isinstance(qa, dict) or not isinstance(qa.get("q"), str) or not isinstance(qa.get("a"), str):
                raise RecordError(f"{who}: vqa[{i}] must be an object with string 'q' and 'a'")
        return cls(**data)


def read_records(path: str | Path) -> list[FaceRecord]:
    """Read ``.jsonl`` / ``.json`` (a list) / ``.parquet`` records.

    Raises:
        FileNotFoundError: no such file.
        RecordError: a malformed line or record (names the line / id).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"records file not found: {path}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        return [FaceRecord.from_dict(_from_parquet(r), f"{path.name} row {i}") for i, r in enumerate(rows)]
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return [FaceRecord.from_dict(r, f"{path.name} item {i}") for i, r in enumerate(data)]
    records = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise RecordError(f"{path.name} line {lineno}: not valid JSON ({err.msg})") from None
        records.append(FaceRecord.from_dict(data, f"{path.name} line {lineno}"))
    return records


def write_records(path: str | Path, records: list[FaceRecord]) -> None:
    """Write records atomically as JSONL, or Parquet for a ``.parquet`` path."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([_to_parquet(r) for r in records])
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
