"""CLI generate / caption / ask / edit / demo give the API's results for the same seed, and one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from unif2ace.cli.main import main
from unif2ace.pipeline.demo import example_faces


def _png_bytes(img, tmp_path, name):
    from unif2ace.pipeline.outputs import save_image

    save_image(img, tmp_path / name)
    return (tmp_path / name).read_bytes()


def test_generate_cli_equals_api(pipe, tiny_bundle, tmp_path, capsys):
    args = ["generate", "A woman with red hair", "--model", str(tiny_bundle), "--seed", "5", "--steps", "3",
            "--guidance", "2", "--num-images", "2", "--out", str(tmp_path / "o"), "--json"]  # fmt: skip
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    api = pipe.generate("A woman with red hair", num_images=2, seed=5, steps=3, guidance_scale=2)
    for i, img in enumerate(api.images):
        assert (tmp_path / "o" / f"generate-5-{i}.png").read_bytes() == _png_bytes(img, tmp_path, f"api-{i}.png")
    meta = json.loads((tmp_path / "o" / "generate-5.json").read_text())
    assert (meta["seed"], meta["steps"], meta["model_hash"]) == (5, 3, pipe.model_hash)
    assert meta["prompts"] == ["A woman with red hair"] * 2 and meta["files"] == [
        "generate-5-0.png",
        "generate-5-1.png",
    ]
    assert data["model_hash"] == pipe.model_hash and len(data["files"]) == 3


def test_caption_and_ask_cli_equal_api(pipe, tiny_bundle, tmp_path, capsys):
    face = example_faces()[1]
    assert (
        main(["caption", str(face), "--model", str(tiny_bundle), "--seed", "1", "--out", str(tmp_path), "--json"]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["text"] == pipe.caption(face, seed=1).text and data["seed"] == 1
    assert json.loads((tmp_path / "caption-1.json").read_text())["text"] == data["text"]
    assert main(["ask", str(face), "Is the person smiling?", "--model", str(tiny_bundle), "--seed", "2",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    streamed = capsys.readouterr().out
    assert streamed.strip() == pipe.ask(face, "Is the person smiling?", seed=2).text.strip()


def test_edit_cli_equals_api(pipe, tiny_bundle, tmp_path, capsys):
    face = example_faces()[0]
    mask = np.zeros((128, 128), dtype=np.uint8)
    mask[64:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    args = ["edit", str(face), "A bearded man", "--mask", str(tmp_path / "mask.png"), "--model", str(tiny_bundle),
            "--seed", "3", "--steps", "2", "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(args) == 0
    api = pipe.edit(face, "A bearded man", mask=mask, seed=3, steps=2)
    assert (tmp_path / "o" / "edit-3-0.png").read_bytes() == _png_bytes(api.images[0], tmp_path, "api.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "edit-3-mask.png")), np.asarray(api.mask))
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["generate", ""], "prompt is empty"),
        (["generate", "a", "--steps", "0"], "steps must be"),
        (["generate", "a", "--seed", "-3"], "seed must be"),
        (["caption", "missing.png"], "not found"),
        (["edit", "FACE", "a", "--region", "tail"], "unknown region"),
        (["edit", "FACE", "a", "--mask", "FACE"], "mask is 128x128"),
        (["ask", "FACE", " "], "question is empty"),
    ],
)
def test_cli_bad_inputs_one_line(tiny_bundle, tmp_path, capsys, argv, needle):
    face = example_faces()[0]
    if "--mask" in argv:  # a mask of the wrong size: a 64 px image
        Image.new("L", (64, 64), 255).save(tmp_path / "small.png")
        argv = [a if a != "FACE" or i != argv.index("--mask") + 1 else str(tmp_path / "small.png")
                for i, a in enumerate(argv)]  # fmt: skip
        needle = "mask is 64x64"
    argv = [str(face) if a == "FACE" else a for a in argv]
    assert main([*argv, "--model", str(tiny_bundle), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_demo_writes_page(tiny_bundle, tmp_path, capsys):
    assert main(["demo", "--model", str(tiny_bundle), "--steps", "2", "--out", str(tmp_path / "demo"), "--json"]) == 0
    page = json.loads(capsys.readouterr().out)["page"]
    text = (tmp_path / "demo" / "index.html").read_text()
    assert page.endswith("index.html") and "Region edit" in text and "Text → face" in text
    for name in ("generate-0.png", "generate-1.png", "face-0.png", "edit-0.png", "edit-mask.png"):
        assert f'src="{name}"' in text and (tmp_path / "demo" / name).is_file()
    record = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert len(record["understanding"]) == len(example_faces()) and record["edit"]["steps"] == 2
