"""Sequence-MoE features: zeros for kinds the bundle lists as null, encoder features where it lists one."""

import json
import shutil
import sys
import types

import torch

from unif2ace import Unif2acePipeline
from unif2ace.pipeline.demo import example_faces


class FakeEncoder:
    name, dim = "clip", 16

    def __init__(self):
        self.calls = 0

    def encode(self, images):
        self.calls += 1
        return images.mean(dim=(2, 3))[:, None, :1].repeat(1, 2, 16) + 1.0  # (B, 2, 16), never all-zero


def _spy_features(pipe, monkeypatch):
    seen = {}
    real = pipe.engine.generate_text

    def spy(prompt, **kw):
        seen.update(kw["features"])
        return real(prompt, **kw)

    monkeypatch.setattr(pipe.engine, "generate_text", spy)
    return seen


def test_null_kinds_get_zeros(tiny_bundle, monkeypatch):
    pipe = Unif2acePipeline.from_pretrained(tiny_bundle, device="cpu")
    seen = _spy_features(pipe, monkeypatch)
    out = pipe.caption(example_faces()[0], seed=0)
    assert set(seen) == {"clip", "face"} and all(not v.any() for v in seen.values())
    assert seen["clip"].shape == (1, 1, 16) and out.metadata["features"] == []


def test_listed_kind_uses_the_encoder(tiny_bundle, tmp_path, monkeypatch):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    info = json.loads((bundle / "bundle.json").read_text())
    info["features"]["clip"] = "semantic encoder of the training run"
    (bundle / "bundle.json").write_text(json.dumps(info))
    encoder = FakeEncoder()
    fake = types.ModuleType("unif2ace.encoders")
    fake.load_encoder = lambda kind: encoder if kind == "clip" else None
    monkeypatch.setitem(sys.modules, "unif2ace.encoders", fake)
    pipe = Unif2acePipeline.from_pretrained(bundle, device="cpu")
    seen = _spy_features(pipe, monkeypatch)
    out = pipe.caption(example_faces()[0], seed=0)
    assert out.metadata["features"] == ["clip"] and encoder.calls == 1
    assert seen["clip"].shape == (1, 2, 16) and bool((seen["clip"] != 0).all()) and not seen["face"].any()
    # without the encoder module the kind falls back to zeros ("missing"), and the call still works
    monkeypatch.setitem(sys.modules, "unif2ace.encoders", types.ModuleType("unif2ace.encoders"))
    pipe2 = Unif2acePipeline.from_pretrained(bundle, device="cpu")
    seen2 = _spy_features(pipe2, monkeypatch)
    assert pipe2.caption(example_faces()[0], seed=0).metadata["features"] == []
    assert not seen2["clip"].any() and torch.is_tensor(seen2["face"])
