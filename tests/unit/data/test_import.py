"""``data import``: photos are detected, aligned and split by identity; bad files are reported and skipped;
caption/VQA datasets (LLaVA-style JSON, Parquet) map onto FaceRecords."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unif2ace.cli.main import main
from unif2ace.data.import_records import import_records, lookup, parse_mapping, to_vqa
from unif2ace.data.records import read_records
from unif2ace.data.validate import validate_records

MINI = Path(__file__).resolve().parents[3] / "data" / "faces-mini" / "images"
needs_dlib = pytest.mark.skipif(
    not __import__("unif2ace.data.faces", fromlist=["x"]).backend_available(),
    reason="needs dlib: pip install --no-deps -r requirements/data-nodeps.txt",
)


def _face(i: int) -> Image.Image:
    return Image.open(MINI / f"0-{i:06d}.png").convert("RGB")


def _png_bomb(path: Path, side: int = 30000) -> None:
    """A tiny PNG whose header claims ``side`` x ``side`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def report_identities(out: Path) -> tuple[int, int]:
    report = json.loads((out / "import_report.json").read_text())
    return report["identities"], report["largest_identity"]


def _photo_folder(root: Path) -> Path:
    src = root / "src"
    (src / "anna").mkdir(parents=True)
    _face(3).save(src / "anna" / "1.png")
    # the same person again: larger, mirrored, rotated, off-centre on a bigger canvas
    canvas = Image.new("RGB", (420, 360), (90, 120, 90))
    tilted = _face(3).resize((240, 240), Image.LANCZOS).transpose(Image.FLIP_LEFT_RIGHT)
    canvas.paste(tilted.rotate(20, expand=True, fillcolor=(90, 120, 90)), (100, 30))
    canvas.save(src / "anna" / "2.jpg", quality=92)
    _face(5).save(src / "ben.png")
    two = Image.new("RGB", (256, 128))
    two.paste(_face(3), (0, 0))
    two.paste(_face(5), (128, 0))
    two.save(src / "two.png")
    gradient = np.linspace(0, 255, 128 * 128 * 3).reshape(128, 128, 3).astype(np.uint8)
    Image.fromarray(gradient).save(src / "no_face.png")
    buf = io.BytesIO()
    _face(7).save(buf, format="JPEG")
    (src / "corrupt.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    _png_bomb(src / "bomb.png")
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    Image.fromarray(noise).save(src / "huge.png")  # ~1.5 MB, over --max-mb 1
    return src


@needs_dlib
def test_folder_import_finishes_reports_bad_files_and_groups_identities(tmp_path, capsys):
    src = _photo_folder(tmp_path)
    out = tmp_path / "out"
    args = ["data", "import", "--src", str(src), "--out", str(out), "--size", "64", "--max-mb", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "3 imported, 5 skipped" in printed
    assert report_identities(out) == (2, 2)
    skipped = {
        Path(s["file"]).name: s["reason"] for s in json.loads((out / "import_report.json").read_text())["skipped"]
    }
    assert skipped["huge.png"].startswith("huge file (1.") and "--max-mb 1" in skipped["huge.png"]
    assert skipped["bomb.png"].startswith("cannot decode image") and "pixels" in skipped["bomb.png"]
    assert skipped["corrupt.jpg"].startswith("cannot decode image")
    assert skipped["no_face.png"] == "no face found"
    assert skipped["two.png"].startswith("2 faces found")
    records = {r.id: r for r in read_records(out / "records.jsonl")}
    assert set(records) == {"folder-anna_1", "folder-anna_2", "folder-ben"}
    # the identity embedding puts both photos of anna together, ben apart
    assert records["folder-anna_1"].identity == records["folder-anna_2"].identity != records["folder-ben"].identity
    assert records["folder-anna_2"].provenance["crop"] == "ffhq-align"
    assert validate_records(out / "records.jsonl") == []
    for rec in records.values():
        with Image.open(out / rec.image) as im:
            assert im.size == (64, 64)


@needs_dlib
def test_alignment_undoes_rotation(tmp_path):
    from unif2ace.data.faces import FaceAnalyzer, align_face

    analyzer = FaceAnalyzer()
    reference = align_face(_face(3), analyzer.detect(_face(3))[0].landmarks, 64)
    canvas = Image.new("RGB", (400, 400), (128, 128, 128))
    canvas.paste(
        _face(3).resize((256, 256), Image.LANCZOS).rotate(-25, expand=True, fillcolor=(128, 128, 128)), (40, 30)
    )
    faces = analyzer.detect(canvas)
    assert len(faces) == 1
    aligned = align_face(canvas, faces[0].landmarks, 64)
    diff = np.abs(np.asarray(aligned, np.float32) - np.asarray(reference, np.float32))[8:56, 8:56].mean()
    assert diff < 6.0  # same crop up to resampling; an unaligned crop differs by far more
    unaligned = np.asarray(canvas.crop(faces[0].box).resize((64, 64)), np.float32)
    assert np.abs(unaligned - np.asarray(reference, np.float32))[8:56, 8:56].mean() > 2 * diff


@needs_dlib
def test_import_resumes_from_its_log_and_refuses_other_settings(tmp_path):
    from unif2ace.data.importer import ImportOptions, import_images

    src = tmp_path / "src"
    src.mkdir()
    for i in (3, 5):
        _face(i).save(src / f"{i}.png")
    first = import_images(src, src / "out", ImportOptions(size=48, identity="file"))  # out inside src
    image = src / "out" / first.records[0].image
    mtime = image.stat().st_mtime_ns
    _face(7).save(src / "7.png")  # a file added after the first run is imported; the others are reused
    second = import_images(src, src / "out", ImportOptions(size=48, identity="file"))  # outputs not re-imported
    assert [r.id for r in second.records] == ["folder-3", "folder-5", "folder-7"]
    assert image.stat().st_mtime_ns == mtime
    assert len((src / "out" / "import_log.jsonl").read_text().splitlines()) == 3
    with pytest.raises(ValueError, match="other settings"):
        import_images(src, src / "out", ImportOptions(size=64, identity="file"))


def test_cluster_embeddings_threshold():
    from unif2ace.data.importer import cluster_embeddings

    base = np.zeros((5, 128), np.float32)
    base[:, 0] = [0.0, 0.3, 1.0, 1.2, 0.1]
    assert cluster_embeddings(base) == [0, 0, 1, 1, 0]
    assert cluster_embeddings(base, threshold=0.05) == [0, 1, 2, 3, 4]
    chain = np.zeros((4, 128), np.float32)
    chain[:, 0] = [0.0, 0.4, 0.8, 1.2]  # neighbours are close, the ends are not: no chaining into one person
    assert cluster_embeddings(chain) == [0, 0, 1, 1]


def test_llava_json_and_parquet_records_import(tmp_path):
    (tmp_path / "imgs").mkdir()
    for name in ("a", "b", "c"):
        Image.new("RGB", (32, 32), (ord(name), 0, 0)).save(tmp_path / "imgs" / f"{name}.png")
    rows = [
        {
            "id": "a",
            "image": "imgs/a.png",
            "conversations": [
                {"from": "human", "value": "<image>\nDescribe the face."},
                {"from": "gpt", "value": "A young woman with black hair."},
                {"from": "human", "value": "Is she smiling?"},
                {"from": "gpt", "value": "Yes, slightly."},
            ],
        },
        {
            "id": "a",
            "image": "imgs/a.png",
            "conversations": [{"from": "human", "value": "Bald?"}, {"from": "gpt", "value": "No."}],
        },
        {"id": "b", "image": "imgs/b.png", "conversations": []},
        {"id": "c", "image": "imgs/missing.png"},
        "not an object",
    ]
    (tmp_path / "llava.json").write_text(json.dumps(rows))
    out = tmp_path / "out"
    args = ["data", "import", "--records", str(tmp_path / "llava.json"), "--out", str(out)]
    assert main([*args, "--map", "caption=conversations.1.value", "--val", "0", "--test", "0"]) == 0
    records = {r.id: r for r in read_records(out / "records.jsonl")}
    assert set(records) == {"a", "b"}
    assert records["a"].caption == "A young woman with black hair."
    assert records["a"].vqa == [
        {"q": "Describe the face.", "a": "A young woman with black hair.", "kind": "open"},
        {"q": "Is she smiling?", "a": "Yes, slightly.", "kind": "yesno"},
        {"q": "Bald?", "a": "No.", "kind": "yesno"},
    ]
    assert records["a"].image == "../imgs/a.png" and records["a"].source == "unif2aced"
    assert validate_records(out / "records.jsonl") == []

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(
        [{"file_name": "imgs/c.png", "text": "An old man.", "qa": [{"question": "Glasses?", "answer": "no"}]}]
    )
    pq.write_table(table, tmp_path / "d.parquet")
    report = import_records(tmp_path / "d.parquet", tmp_path / "pq", source="mmcelebahq")
    assert report.skipped == []
    rec = report.records[0]
    assert (rec.id, rec.caption, rec.source) == ("c", "An old man.", "mmcelebahq")
    assert rec.vqa == [{"q": "Glasses?", "a": "no", "kind": "yesno"}]


def test_records_import_reports_bad_rows(tmp_path):
    (tmp_path / "r.jsonl").write_text('{"caption": "x"}\n{oops\n{"image": "nope.png"}\n')
    report = import_records(tmp_path / "r.jsonl", tmp_path / "out")
    assert report.records == []
    assert [why for _, why in report.skipped] == [
        "no image (use --map image=PATH)",
        "line 2: not valid JSON (Expecting property name enclosed in double quotes)",
        f"image missing: {tmp_path / 'nope.png'}",
    ]


def test_mapping_helpers():
    assert parse_mapping(["caption=conversations.1.value", "vqa="]) == {"caption": "conversations.1.value", "vqa": ""}
    with pytest.raises(ValueError, match="FIELD=PATH"):
        parse_mapping(["colour=x"])
    row = {"a": [{"b": 1}, {"b": 2}]}
    assert lookup(row, "a.1.b") == 2 and lookup(row, "a.-1.b") == 2 and lookup(row, "a.5.b") is None
    assert to_vqa("nope") == [] and to_vqa([{"q": "x", "a": "no way"}]) == [{"q": "x", "a": "no way", "kind": "yesno"}]
