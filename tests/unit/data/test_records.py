"""FaceRecord schema, JSONL / JSON / Parquet round trips, WebDataset-style tar shards."""

from __future__ import annotations

import json
import tarfile

import pytest
from PIL import Image

from unif2ace.data.records import (
    FaceRecord,
    RecordError,
    parse_records,
    read_records,
    read_shards,
    shard_key,
    write_records,
    write_shards,
)


def make_records(n: int = 6) -> list[FaceRecord]:
    return [
        FaceRecord(
            id=f"r{i}",
            image=f"images/{i}.png",
            source="synth",
            caption=f'A face number {i}, with ünïcode and "quotes".' if i % 3 else "",
            identity=f"p{i // 2}",
            attributes={
                "smiling": {"value": bool(i % 2), "confidence": 0.9, "annotator": "clf@1"},
                "hair_color": {"value": ["black", "brown"][i % 2]},
            },
            vqa=[{"q": "Is the person smiling?", "a": "yes" if i % 2 else "no", "kind": "yesno"}] * (i % 3),
            split=("train", "val", "test")[i % 3],
            provenance={"seed": i, "nested": {"list": [1, 2.5, None]}},
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_round_trip(tmp_path, suffix):
    recs = make_records()
    path = tmp_path / f"r{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps([r.to_dict() for r in recs]))
    else:
        write_records(path, recs)
    assert read_records(path) == recs
    assert not list(tmp_path.glob("*.tmp"))


def test_parquet_of_an_empty_corpus_round_trips(tmp_path):
    write_records(tmp_path / "e.parquet", [])
    assert read_records(tmp_path / "e.parquet") == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": ""}, "'id'"),
        ({"image": 3}, "'image'"),
        ({"caption": None}, "'caption'"),
        ({"split": "holdout"}, "'split'"),
        ({"vqa": {"q": "x"}}, "'vqa'"),
        ({"vqa": [{"q": "x"}]}, "'vqa[0]'"),
        ({"vqa": [{"q": "x", "a": "y", "extra": 1}]}, "'vqa[0]'"),
        ({"attributes": {"smiling": True}}, "'attributes.smiling'"),
        ({"attributes": {"smiling": {"value": 1, "confidence": 1.5}}}, "'attributes.smiling'"),
        ({"attributes": {"smiling": {"value": 1, "score": 0.5}}}, "'attributes.smiling'"),
        ({"provenance": []}, "'provenance'"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_schema_errors_name_record_and_field(change, field):
    data = {**make_records(1)[0].to_dict(), **change}
    with pytest.raises(RecordError, match="rec.jsonl line 4") as err:
        FaceRecord.from_dict(data, "rec.jsonl line 4")
    assert field in str(err.value) and "\n" not in str(err.value)
    if change.get("id") != "":
        assert "(id 'r0')" in str(err.value)


def test_lenient_parse_collects_every_bad_line(tmp_path):
    good = json.dumps(make_records(1)[0].to_dict())
    (tmp_path / "r.jsonl").write_text(f'{good}\n{{oops\n\n{{"id": "z", "image": "a.png", "split": "x"}}\n[1]\n')
    records, problems = parse_records(tmp_path / "r.jsonl")
    assert len(records) == 1 and len(problems) == 3
    assert problems[0].startswith("r.jsonl line 2: not valid JSON")
    assert problems[1].startswith("r.jsonl line 4 (id 'z'): field 'split'")
    assert problems[2].startswith("r.jsonl line 5: expected a JSON object")
    with pytest.raises(RecordError, match=r"line 2: not valid JSON .*and 2 more"):
        read_records(tmp_path / "r.jsonl")
    with pytest.raises(FileNotFoundError, match="records file not found"):
        read_records(tmp_path / "missing.jsonl")


def test_shards_round_trip_and_are_reproducible(tmp_path):
    recs = make_records(5)
    recs[0].id = "ffhq/00000.png"  # ids with '/' and '.' need a safe member key
    (tmp_path / "images").mkdir()
    for i in range(5):
        Image.new("RGB", (16, 16), (i * 50, 0, 0)).save(tmp_path / "images" / f"{i}.png")
    paths = write_shards(recs, tmp_path, tmp_path / "a", shard_size=2)
    again = write_shards(recs, tmp_path, tmp_path / "b", shard_size=2)
    assert [p.name for p in paths] == ["faces-000000.tar", "faces-000001.tar", "faces-000002.tar"]
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    with tarfile.open(paths[0]) as tar:
        assert tar.getnames() == ["ffhq_00000_png.png", "ffhq_00000_png.json", "r1.png", "r1.json"]
    loaded = list(read_shards(paths))
    assert [r.id for r, _ in loaded] == [r.id for r in recs]
    assert [r.caption for r, _ in loaded] == [r.caption for r in recs]
    assert loaded[2][0].image == "r2.png" and loaded[2][1] == (tmp_path / "images" / "2.png").read_bytes()
    assert shard_key("a.b/c d") == "a_b_c_d"


def test_shards_refuse_missing_images_and_key_clashes(tmp_path):
    recs = make_records(2)
    with pytest.raises(FileNotFoundError, match="record 'r0'"):
        write_shards(recs, tmp_path, tmp_path / "s")
    recs[1].id = "r.0"
    recs[0].id = "r_0"
    with pytest.raises(ValueError, match="collide"):
        write_shards(recs, tmp_path, tmp_path / "s")


def test_cli_shards_one_split(tmp_path, capsys):
    from unif2ace.cli.main import main

    recs = make_records(6)
    (tmp_path / "images").mkdir()
    for i in range(6):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(tmp_path / "images" / f"{i}.png")
    write_records(tmp_path / "r.jsonl", recs)
    assert main(["data", "shards", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "s"), "--split", "val"]) == 0
    assert "2 records in 1 shard(s)" in capsys.readouterr().out
    assert [r.id for r, _ in read_shards(sorted((tmp_path / "s").glob("*.tar")))] == ["r1", "r4"]
