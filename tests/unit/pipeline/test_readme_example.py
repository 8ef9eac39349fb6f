"""The README's pipeline example runs as written (on the random tiny bundle instead of the shipped one)."""

import re
from pathlib import Path

import pytest

from unif2ace.pipeline.demo import example_faces

REPO = Path(__file__).resolve().parents[3]


def test_readme_pipeline_example(tiny_bundle, tmp_path, monkeypatch):
    pytest.importorskip("dlib")
    from unif2ace.data.faces import backend_available

    if not backend_available():
        pytest.skip("dlib model files not installed (the example edits a landmark region)")
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Generate, describe, ask, edit") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "from_pretrained()" in code
    code = code.replace("from_pretrained()", f"from_pretrained({str(tiny_bundle)!r}, device='cpu')")
    monkeypatch.chdir(tmp_path)
    from PIL import Image

    Image.open(example_faces()[0]).convert("RGB").save(tmp_path / "photo.jpg")
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "face.png").is_file() and (tmp_path / "edited.png").is_file()
