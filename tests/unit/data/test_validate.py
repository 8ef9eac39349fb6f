"""``data validate`` catches each planted fault and names the record; ``data stats`` counts what is there."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from PIL import Image

from unif2ace.cli.main import main
from unif2ace.data.records import FaceRecord, write_records
from unif2ace.data.validate import validate_records

MINI = Path(__file__).resolve().parents[3] / "data" / "faces-mini" / "records.jsonl"


def _corpus(root: Path, n: int = 6) -> list[FaceRecord]:
    (root / "images").mkdir(parents=True)
    recs = []
    for i in range(n):
        Image.new("RGB", (32, 32), (i * 40, 10, 10)).save(root / "images" / f"{i}.jpg", quality=95)
        recs.append(FaceRecord(id=f"r{i}", image=f"images/{i}.jpg", identity=f"p{i // 2}"))
    return recs


def test_valid_corpus_has_no_problems(tmp_path, capsys):
    write_records(tmp_path / "ok.jsonl", _corpus(tmp_path))
    assert validate_records(tmp_path / "ok.jsonl") == []
    assert main(["data", "validate", str(tmp_path / "ok.jsonl")]) == 0
    assert "OK" in capsys.readouterr().out


def test_each_planted_fault_is_reported_with_its_record(tmp_path, capsys):
    recs = _corpus(tmp_path)
    (tmp_path / "images" / "1.jpg").unlink()  # missing file
    data = (tmp_path / "images" / "2.jpg").read_bytes()
    (tmp_path / "images" / "2.jpg").write_bytes(data[: len(data) // 2])  # truncated (corrupt) JPEG
    shutil.copy(tmp_path / "images" / "4.jpg", tmp_path / "images" / "5.jpg")  # duplicate image
    recs[3].id = "r0"  # duplicate id
    recs[4].split = "test"  # identity p2 now in train (r5) and test (r4): leakage
    write_records(tmp_path / "bad.jsonl", recs)
    with open(tmp_path / "bad.jsonl", "a") as fh:  # bad schema
        fh.write('{"id": "z1", "image": "images/0.jpg", "split": "holdout"}\n')
    problems = validate_records(tmp_path / "bad.jsonl")
    text = "\n".join(problems)
    assert len(problems) == 6, text
    assert "bad.jsonl line 7 (id 'z1'): field 'split'" in text
    assert "record 'r1': image file missing" in text
    assert "record 'r2': image 2.jpg is corrupt or unusable" in text
    assert "record 'r0': duplicate id (2 records)" in text
    assert "records 'r4', 'r5': identical image content" in text
    assert "records 'r4' (test): identity 'p2' also in split 'train'" in text and "leakage" in text
    assert main(["data", "validate", str(tmp_path / "bad.jsonl")]) == 1
    assert "6 problem(s)" in capsys.readouterr().out


def test_pixel_identical_images_in_other_encodings_are_duplicates(tmp_path):
    (tmp_path / "images").mkdir()
    img = Image.new("RGB", (20, 20), (1, 2, 3))
    img.save(tmp_path / "images" / "a.png")
    img.save(tmp_path / "images" / "b.png", compress_level=0)  # other bytes, same pixels
    recs = [FaceRecord(id=x, image=f"images/{x}.png") for x in "ab"]
    write_records(tmp_path / "r.jsonl", recs)
    assert validate_records(tmp_path / "r.jsonl") == ["records 'a', 'b': identical image content (duplicate images)"]
    assert validate_records(tmp_path / "r.jsonl", check_images=False) == []


def test_in_repo_mini_corpus_is_valid():
    assert validate_records(MINI) == []


def test_stats_counts_and_plots(tmp_path):
    recs = _corpus(tmp_path, 4)
    recs[0].caption = "a smiling young woman with long wavy black hair"
    recs[1].caption = "an old man"
    recs[0].attributes = {"smiling": {"value": True, "confidence": 0.8, "annotator": "clf@1"}}
    recs[1].attributes = {"smiling": {"value": False, "confidence": 0.6, "annotator": "clf@1"}}
    recs[2].attributes = {"smiling": {"value": True, "confidence": 1.0, "annotator": "clf@1"}}
    recs[0].vqa = [
        {"q": "Is she smiling?", "a": "Yes, she is.", "kind": "yesno"},
        {"q": "Is he bald?", "a": "No.", "kind": "yesno"},
        {"q": "Hair colour?", "a": "Black.", "kind": "open"},
    ]
    recs[1].vqa = [{"q": "Glasses?", "a": "yes", "kind": "yesno"}]
    write_records(tmp_path / "r.jsonl", recs)
    assert main(["data", "stats", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "s")]) == 0
    stats = json.loads((tmp_path / "s" / "stats.json").read_text())
    assert stats["records"] == 4 and stats["identities"] == 2 and stats["splits"] == {"train": 4}
    assert stats["captions"]["captioned"] == 2 and stats["captions"]["words"]["mean"] == 6.0  # 9 and 3 words
    assert stats["attributes"]["values"] == {"smiling": {"False": 1, "True": 2}}
    assert stats["attributes"]["mean_confidence"]["smiling"] == 0.8
    assert stats["vqa"]["pairs"] == 4 and stats["vqa"]["kinds"] == {"open": 1, "yesno": 3}
    assert stats["vqa"]["yes_no"] == {"yesno": {"yes": 2, "no": 1}} and stats["vqa"]["yes_fraction"] == 0.6667
    for name in ("attributes.png", "caption_length.png", "yes_no.png"):
        with Image.open(io.BytesIO((tmp_path / "s" / name).read_bytes())) as im:
            assert im.width > 100
