"""Annotation plumbing: the Annotator protocol, the registry, merging by priority/confidence, harmonising rules,
and the resumable records pass (with fake backends, so no model files are needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from unif2ace.data.annotation import (
    Annotator,
    AttributeValue,
    FaceInfo,
    annotate_records,
    available_annotators,
    build_annotators,
    merge,
    protocol,
    register_annotator,
)
from unif2ace.data.annotation.protocol import harmonise
from unif2ace.data.records import FaceRecord, read_records, write_records


class Fake:
    """A backend that returns fixed predictions and counts its calls."""

    def __init__(self, name: str, preds: dict[str, AttributeValue], version: str = "1") -> None:
        self.name, self.version, self.attributes = name, version, tuple(preds)
        self.preds, self.calls = preds, 0

    def annotate(self, image: Image.Image, face: FaceInfo) -> dict[str, AttributeValue]:
        self.calls += 1
        assert face.rgb.shape == (image.height, image.width, 3)
        return dict(self.preds)


def test_fake_backend_satisfies_protocol_and_incomplete_object_does_not():
    assert isinstance(Fake("a", {}), Annotator)

    class NoAnnotate:
        name, version, attributes = "x", "1", ()

    assert not isinstance(NoAnnotate(), Annotator)


def test_merge_priority_margin_and_taxonomy_check():
    first = Fake("first", {"smile": AttributeValue(True, 0.6), "gender": AttributeValue("male", 0.9)})
    second = Fake("second", {"smile": AttributeValue(False, 0.8), "gender": AttributeValue("female", 1.0)})
    third = Fake("third", {"smile": AttributeValue(np.bool_(False), 0.99), "hat": AttributeValue(True, 1.7)})
    out = merge([(first, first.preds), (second, second.preds)], override_margin=0.25)
    # 0.8 < 0.6 + 0.25: the higher-priority answer stays; 1.0 < 0.9 + 0.25 too
    assert out["smile"] == {"value": True, "confidence": 0.6, "annotator": "first@1"}
    assert out["gender"]["value"] == "male"
    out = merge([(first, first.preds), (second, second.preds), (third, third.preds)])
    assert out["smile"] == {"value": False, "confidence": 0.99, "annotator": "third@1"}  # 0.99 >= 0.6 + 0.25
    assert type(out["smile"]["value"]) is bool  # numpy bools become JSON bools
    assert out["hat"]["confidence"] == 1.0  # clipped to [0, 1]
    with pytest.raises(ValueError, match="'gender': value 'robot'"):
        merge([(first, {"gender": AttributeValue("robot", 0.9)})])
    with pytest.raises(ValueError, match="unknown attribute 'wings'"):
        merge([(first, {"wings": AttributeValue(True, 0.9)})])


def test_harmonise_rules():
    def a(value, conf=0.9, who="x@1"):
        return {"value": value, "confidence": conf, "annotator": who}

    attrs = {
        "gender": a("female", 0.95), "beard": a(True), "mustache": a(True, 0.4), "sunglasses": a(True, 0.7),
        "eyeglasses": a(False), "bald": a(True), "hair_color": a("black"), "bangs": a(False),
        "laugh": a(True, 0.8), "smile": a(False),
    }  # fmt: skip
    out = harmonise(attrs)
    assert out["beard"] == {"value": False, "confidence": 0.95, "annotator": "rules@1"}
    assert out["mustache"]["value"] is False
    assert out["eyeglasses"] == {"value": True, "confidence": 0.7, "annotator": "rules@1"}
    assert "hair_color" not in out and "bangs" not in out
    assert out["smile"]["value"] is True
    unsure = harmonise({"gender": a("female", 0.6), "beard": a(True)})  # not sure enough to overrule the beard
    assert unsure["beard"]["value"] is True


def test_registry_unknown_name_and_missing_backend_skipped(caplog):
    assert available_annotators()[:4] == ["age-gender", "expression", "geometry", "colour"]
    with pytest.raises(ValueError, match="unknown annotator 'vlm'; choose from age-gender"):
        build_annotators(["vlm"])

    def missing():
        raise FileNotFoundError("model file gone.onnx not found")

    register_annotator("test-missing", missing)
    register_annotator("test-fake", lambda: Fake("test-fake", {"smile": AttributeValue(True, 1.0)}))
    try:
        built = build_annotators(["test-missing", "test-fake"])
        assert [b.name for b in built] == ["test-fake"]
        assert "test-missing skipped: model file gone.onnx" in caplog.text
    finally:
        protocol._REGISTRY.pop("test-missing")
        protocol._REGISTRY.pop("test-fake")


def _records(tmp_path, n=3):
    (tmp_path / "images").mkdir()
    records = []
    for i in range(n):
        Image.new("RGB", (48, 48), (40 * i, 90, 160)).save(tmp_path / "images" / f"{i}.png")
        keep = {"custom_tag": {"value": "x", "confidence": 1.0, "annotator": "user@1"}}
        records.append(FaceRecord(f"r{i}", f"images/{i}.png", attributes=keep))
    write_records(tmp_path / "records.jsonl", records)
    return tmp_path / "records.jsonl"


def test_annotate_records_writes_provenance_resumes_and_redoes(tmp_path):
    path = _records(tmp_path)
    a = Fake("a", {"smile": AttributeValue(True, 0.9), "gender": AttributeValue("female", 0.95)})
    b = Fake("b", {"beard": AttributeValue(True, 0.9), "background_color": AttributeValue("blue", 0.8)})
    counts = annotate_records(path, [a, b], progress=False, save_every=2)
    assert counts == {"annotated": 3, "skipped": 0, "no_face": counts["no_face"]} and a.calls == 3
    rec = read_records(path)[0]
    assert rec.provenance["annotators"] == ["a@1", "b@1"]
    assert rec.attributes["custom_tag"]["value"] == "x"  # non-taxonomy attributes survive
    assert rec.attributes["beard"]["annotator"] == "rules@1"  # harmonised: a confidently female face
    assert rec.attributes["background_color"] == {"value": "blue", "confidence": 0.8, "annotator": "b@1"}
    before = path.read_bytes()
    assert annotate_records(path, [a, b], progress=False)["skipped"] == 3 and a.calls == 3
    assert path.read_bytes() == before
    b.version = "2"  # a new backend version re-annotates
    assert annotate_records(path, [a, b], progress=False)["annotated"] == 3
    assert json.loads(path.read_text().splitlines()[0])["provenance"]["annotators"] == ["a@1", "b@2"]
    assert annotate_records(path, [a, b], redo=True, progress=False)["annotated"] == 3 and a.calls == 9
    with pytest.raises(ValueError, match="no annotator available"):
        annotate_records(path, [], progress=False)
