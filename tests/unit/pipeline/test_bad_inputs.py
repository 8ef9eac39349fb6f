"""Bad inputs to the pipeline: one-line ValueErrors naming the problem, and the pipeline keeps working."""

import numpy as np
import pytest
import torch
from PIL import Image

from unif2ace import Unif2acePipeline


def _corrupt_png(tmp_path):
    path = tmp_path / "bad.png"
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(good)
    path.write_bytes(good.read_bytes()[:60])
    return path


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(prompt=""), "prompt is empty"),
        (dict(prompt="   "), "prompt is empty"),
        (dict(prompt=[]), "non-empty"),
        (dict(prompt=["ok", 3]), r"prompt\[1\] must be a string"),
        (dict(prompt="x" * 5000), "limit is 4000"),
        (dict(prompt=None), "non-empty string"),
        (dict(prompt="a", num_images=0), "num_images must be an integer"),
        (dict(prompt="a", num_images=100), "num_images"),
        (dict(prompt="a", steps=0), "steps must be an integer"),
        (dict(prompt="a", steps=2.5), "steps must be an integer"),
        (dict(prompt="a", guidance_scale=-1), "guidance_scale"),
        (dict(prompt="a", guidance_scale=float("nan")), "guidance_scale"),
        (dict(prompt="a", seed=-1), "seed must be an integer"),
        (dict(prompt="a", seed="7"), "seed must be an integer"),
        (dict(prompt="a", seed=2**64), "seed must be an integer"),
        (dict(prompt="a", schedule="wiggly"), "unknown schedule"),
        (dict(prompt="a", negative_prompt=""), "negative_prompt is empty"),
    ],
)
def test_generate_rejects(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        pipe.generate(**kwargs)
    assert "\n" not in str(info.value)


def test_image_inputs_rejected(pipe, tmp_path):
    cases = [
        (123, "must be a PIL image"),
        (tmp_path / "missing.png", "not found"),
        (_corrupt_png(tmp_path), "cannot decode image"),
        (np.zeros((64, 64, 3), dtype=np.float32), "must be uint8"),
        (np.zeros((64, 64, 5), dtype=np.uint8), r"shape \(H, W, 3\)"),
        (np.zeros((8, 8, 3), dtype=np.uint8), "too small"),
        (torch.zeros(64, 64), r"\(3, H, W\)"),
        (torch.full((3, 64, 64), float("nan")), "NaN"),
        ("", "path is empty"),
    ]
    for image, match in cases:
        with pytest.raises(ValueError, match=match) as info:
            pipe.caption(image)
        assert "\n" not in str(info.value)


def test_huge_image_refused_before_decoding(pipe, tmp_path):
    import struct
    import zlib

    path = tmp_path / "huge.png"
    Image.new("L", (32, 32)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 header bytes
    ihdr[4:12] = struct.pack(">II", 20000, 20000)  # claims 20k x 20k = 400 MP
    data[12:29], data[29:33] = ihdr, struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="too large|decompression bomb") as info:
        pipe.caption(path)
    assert "20000" in str(info.value) or "400000000" in str(info.value)


def test_ask_and_edit_rejects(pipe, face):
    with pytest.raises(ValueError, match="question is empty"):
        pipe.ask(face, " ")
    with pytest.raises(ValueError, match="history"):
        pipe.ask(face, "ok?", history=[("only a question",)])
    with pytest.raises(ValueError, match="max_new_tokens"):
        pipe.caption(face, max_new_tokens=0)
    with pytest.raises(ValueError, match="unknown region 'tail'"):
        pipe.edit(face, "a", region="tail")
    with pytest.raises(ValueError, match="exactly one of region"):
        pipe.edit(face, "a")
    with pytest.raises(ValueError, match="exactly one of region"):
        pipe.edit(face, "a", region="hair", mask=np.ones((128, 128), dtype=np.uint8))
    with pytest.raises(ValueError, match="mask is 64x64 but the image is 128x128"):
        pipe.edit(face, "a", mask=np.ones((64, 64), dtype=np.uint8) * 255)
    with pytest.raises(ValueError, match="selects no image token"):
        pipe.edit(face, "a", mask=np.zeros((128, 128), dtype=np.uint8))
    with pytest.raises(ValueError, match="one prompt"):
        pipe.edit(face, ["a", "b"], mask=np.ones((128, 128), dtype=np.uint8) * 255)
    long_question = "Is this a face? " * 200
    with pytest.raises(ValueError, match="the model reads at most"):
        pipe.ask(face, long_question)
    assert pipe.caption(face, seed=0).text == pipe.caption(face, seed=0).text  # still serving


def test_edit_without_face_names_the_fix(pipe):
    pytest.importorskip("dlib")
    from unif2ace.data.faces import backend_available

    if not backend_available():
        pytest.skip("dlib model files not installed")
    flat = Image.new("RGB", (64, 64), (120, 130, 140))
    with pytest.raises(ValueError, match="no face found.*mask="):
        pipe.edit(flat, "a", region="eyes")


def test_from_pretrained_errors(tmp_path, tiny_bundle, monkeypatch):
    import shutil

    import unif2ace.pipeline.pipeline as pl

    monkeypatch.setattr(pl, "default_bundle_dir", lambda: tmp_path / "weights" / "faces-tiny")
    with pytest.raises(FileNotFoundError, match="faces-tiny.*unif2ace export"):
        Unif2acePipeline.from_pretrained()
    with pytest.raises(FileNotFoundError, match="model bundle not found"):
        Unif2acePipeline.from_pretrained(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "vq" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError):
        Unif2acePipeline.from_pretrained(broken, device="cpu")
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_bundle, tampered)
    data = bytearray((tampered / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (tampered / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the hash"):
        Unif2acePipeline.from_pretrained(tampered, device="cpu")
    (tampered / "bundle.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Unif2acePipeline.from_pretrained(tampered, device="cpu")
