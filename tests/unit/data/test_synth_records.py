"""Face synthesis (determinism, resume), records (JSONL/Parquet round trip), splits, validation faults."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from unif2ace.data.records import FaceRecord, RecordError, read_records, write_records
from unif2ace.data.splits import assign_splits
from unif2ace.data.validate import validate_records

needs_synth = pytest.mark.skipif(
    importlib.util.find_spec("random_face") is None or importlib.util.find_spec("openvino") is None,
    reason="pip install --no-deps -r requirements/nodeps.txt && pip install openvino",
)


@needs_synth
def test_synth_is_deterministic_and_resumes(tmp_path):
    from unif2ace.data.synth import synthesize_faces

    a = synthesize_faces(2, tmp_path / "a", size=32, seed=7, workers=1, progress=False)
    b = synthesize_faces(2, tmp_path / "b", size=32, seed=7, workers=2, progress=False)
    c = synthesize_faces(1, tmp_path / "c", size=32, seed=8, workers=1, progress=False)
    bytes_a = [(tmp_path / "a" / e.file).read_bytes() for e in a]
    assert bytes_a == [(tmp_path / "b" / e.file).read_bytes() for e in b]
    assert bytes_a[0] != (tmp_path / "c" / c[0].file).read_bytes()
    assert a[0].seed != a[1].seed and a[0].seed == b[0].seed
    (tmp_path / "a" / a[1].file).unlink()  # an interrupted run: resume regenerates only the missing face
    mtime = (tmp_path / "a" / a[0].file).stat().st_mtime_ns
    synthesize_faces(2, tmp_path / "a", size=32, seed=7, workers=1, progress=False)
    assert (tmp_path / "a" / a[0].file).stat().st_mtime_ns == mtime
    assert (tmp_path / "a" / a[1].file).read_bytes() == bytes_a[1]
    with pytest.raises(ValueError, match="other settings"):
        synthesize_faces(2, tmp_path / "a", size=64, seed=7, progress=False)


def _records(n=6) -> list[FaceRecord]:
    return [
        FaceRecord(
            id=f"r{i}",
            image=f"images/{i}.png",
            source="synth",
            caption=f"face {i}",
            identity=f"p{i // 2}",
            attributes={"smiling": {"value": bool(i % 2), "confidence": 0.9, "annotator": "x@1"}},
            vqa=[{"q": "Is the person smiling?", "a": "yes" if i % 2 else "no", "kind": "yesno"}],
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_records_round_trip(tmp_path, suffix):
    recs = _records()
    write_records(tmp_path / f"r{suffix}", recs)
    assert read_records(tmp_path / f"r{suffix}") == recs


def test_splits_are_identity_disjoint():
    recs = assign_splits(_records(40), val=0.2, test=0.2, seed=1)
    by_identity = {}
    for r in recs:
        by_identity.setdefault(r.identity, set()).add(r.split)
    assert all(len(s) == 1 for s in by_identity.values())
    assert {r.split for r in recs} == {"train", "val", "test"}


def test_validate_catches_each_planted_fault(tmp_path, fixtures_dir=None):
    from PIL import Image

    (tmp_path / "images").mkdir()
    recs = _records(6)
    for i in range(6):
        Image.new("RGB", (8, 8), (i * 40, 10, 10)).save(tmp_path / "images" / f"{i}.png")
    write_records(tmp_path / "ok.jsonl", recs)
    assert validate_records(tmp_path / "ok.jsonl") == []
    (tmp_path / "images" / "1.png").unlink()  # missing file
    (tmp_path / "images" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # corrupt
    shutil.copy(tmp_path / "images" / "4.png", tmp_path / "images" / "5.png")  # duplicate image
    recs[3].id = "r0"  # duplicate id
    recs[4].split = "test"  # identity p2 now in train and test: leakage
    write_records(tmp_path / "bad.jsonl", recs)
    problems = "\n".join(validate_records(tmp_path / "bad.jsonl"))
    assert "'r1': image file missing" in problems
    assert "'r2': image 2.png is corrupt" in problems
    assert "'r0': duplicate id" in problems
    assert "'r4', 'r5': identical image content" in problems
    assert "identity 'p2'" in problems and "leakage" in problems
    (tmp_path / "schema.jsonl").write_text('{"id": "z1", "image": "a.png", "split": "holdout"}\n')
    assert "(id 'z1'): field 'split'" in validate_records(tmp_path / "schema.jsonl")[0]
    with pytest.raises(RecordError, match="line 1: not valid JSON"):
        (tmp_path / "j.jsonl").write_text("{oops\n")
        read_records(tmp_path / "j.jsonl")


def test_in_repo_mini_corpus_is_valid():
    from pathlib import Path

    records = Path(__file__).resolve().parents[3] / "data" / "faces-mini" / "records.jsonl"
    assert validate_records(records) == []
    assert len(read_records(records)) == 240
